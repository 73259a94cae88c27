"""What channel widths cost on LiteRT: ResNet-20 shapes at about half the MACs, timed.

  python benchmarks/experiments/benchmark_widths.py --rounds=30

The cifar10k protocol's ResNet-20 (width 12: 12/24/48 channels, 23.0M MACs) is
built at other widths with random weights (latency does not depend on the
values), exported as float32 and int8 TFLite files (`export_tflite`, verified
against Keras) and timed interleaved with 1 thread on the default interpreter
(`litert.time_files`). Each shape gives the width of the residual stream of
each stage (stem included) and of each block's inner convolution. Writes
`benchmarks/results/cifar_resnet20/latency/widths.json`; run it on a quiet
machine. The question it answers (issue 12): does keeping multiples of 8
channels (`prune.round_to=8`) buy speed that the MACs alone do not predict?
"""

import datetime
import json
import os
import platform
import sys
import tempfile

import keras
import numpy as np
from absl import app, flags

from deadwood_tf import atomic, export, litert, pipeline, provenance

_ROUNDS = flags.DEFINE_integer("rounds", 30, "Timing rounds per file.")
_OUT = flags.DEFINE_string("output", "benchmarks/results/cifar_resnet20/latency/widths.json",
                           "Where the results go.")
_NOTE = flags.DEFINE_string("machine_note", "", "How quiet the machine was (goes in the file).")

# name: (stream widths of the 3 stages, the 9 inner widths), what the shape is
SHAPES = {
    "dense": ([12, 24, 48], [12] * 3 + [24] * 3 + [48] * 3, "the protocol's ResNet-20"),
    "deadwood_channel_50": ([11, 18, 34], [7, 8, 10, 13, 12, 19, 23, 29, 20],
                            "the widths of the deadwood_channel 0.5 row (seed 0)"),
    "cut_50_r1": ([10, 17, 35], [9, 8, 8, 13, 13, 16, 28, 32, 30],
                  "cut_channels(0.5) of the dense-AT model, round_to=1"),
    "cut_50_r8": ([8, 16, 40], [8] * 3 + [16] * 3 + [24, 32, 32],
                  "cut_channels(0.5) of the dense-AT model, round_to=8"),
    "deadwood_channel_r8_50": ([12, 24, 32], [8, 8, 8, 8, 8, 16, 24, 24, 16],
                               "the widths of the deadwood_channel_r8 0.5 row (seed 0)"),
    "score_per_mac_50": ([8, 8, 32], [8] * 3 + [24] * 3 + [48] * 3,
                         "the dense-AT model's aligned cut with blocks ranked by score per "
                         "MAC saved (tried, not adopted)"),
    "aligned_49": ([8, 16, 48], [8] * 3 + [16] * 3 + [32] * 3,
                   "multiples of 8, stage-3 stream kept at 48"),
    "stream12_50": ([12, 24, 32], [8] * 6 + [32] * 3, "multiples of 8 except the stage-1 "
                    "stream, kept at 12"),
    "uniform_w8": ([8, 16, 32], [8] * 3 + [16] * 3 + [32] * 3, "every width x 2/3"),
    "aligned_same_macs": ([16, 32, 32], [16] * 9,
                          "multiples of 16, the dense model's MACs (none removed)"),
    "stage1_thin": ([8, 24, 48], [4] * 3 + [8] * 3 + [32] * 3, "cut mostly in stage 1"),
    "stage3_thin": ([12, 24, 32], [12] * 3 + [16] * 6, "cut mostly in stages 2-3"),
}


def build(stream, inner, name):
    """The ResNet-20 of `deadwood_tf.models.resnet` with free widths."""
    layers = keras.layers
    x = inp = keras.Input((32, 32, 3))
    x = layers.Conv2D(stream[0], 3, padding="same", use_bias=False)(x)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    i = 0
    for s in range(3):
        for b in range(3):
            stride = 2 if s > 0 and b == 0 else 1
            shortcut = x
            y = layers.Conv2D(inner[i], 3, strides=stride, padding="same", use_bias=False)(x)
            y = layers.ReLU()(layers.BatchNormalization()(y))
            y = layers.BatchNormalization()(
                layers.Conv2D(stream[s], 3, padding="same", use_bias=False)(y))
            if stride != 1 or shortcut.shape[-1] != stream[s]:
                shortcut = layers.BatchNormalization()(
                    layers.Conv2D(stream[s], 1, strides=stride, use_bias=False)(shortcut))
            x = layers.ReLU()(layers.Add()([y, shortcut]))
            i += 1
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(10)(x), name=name)


def main(argv):
    del argv
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(64, 32, 32, 3)).astype("float32")
    tdir = tempfile.mkdtemp(prefix="widths_")
    entries, paths = {}, []
    for name, (stream, inner, what) in SHAPES.items():
        model = build(stream, inner, name)
        for layer in model.layers:  # batch-norm statistics of a trained net's scale
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.moving_variance.assign(np.full(layer.moving_variance.shape, 4.0))
        entry = {"stream": stream, "inner": inner, "what": what, **pipeline.model_size(model)}
        for kind, quantize in (("fp32", None), ("int8", "int8")):
            path = os.path.join(tdir, f"{name}_{kind}.tflite")
            export.export_tflite(model, path, sparse=False, quantize=quantize, sample_inputs=x,
                                 **({"representative_data": x} if quantize else {}))
            paths.append(path)
        entries[name] = entry
        print(f"== {name}: {entry['macs'] / 1e6:.2f}M MACs", flush=True)
    times = litert.time_files(paths, threads=(1,), rounds=_ROUNDS.value, invokes=10)["1"]
    dense = entries["dense"]
    for name, e in entries.items():
        for kind in ("fp32", "int8"):
            e[f"us_{kind}_1t"] = times[f"{name}_{kind}.tflite"]
        e["macs_removed"] = 1 - e["macs"] / dense["macs"]
        print(f"{name:20s} MACs removed {e['macs_removed']:.2f}  " + "  ".join(
            f"{k} {e[f'us_{k}_1t']:.0f} us ({times[f'dense_{k}.tflite'] / e[f'us_{k}_1t']:.2f}x)"
            for k in ("fp32", "int8")), flush=True)
    result = {"shapes": entries, "rounds": _ROUNDS.value, "invokes": 10,
              "command": " ".join(a for a in sys.argv if not a.startswith("--machine_note")),
              "machine": {**provenance.machine(), "machine": platform.machine(),
                          "note": _NOTE.value},
              "versions": provenance.versions(),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    atomic.write_json(_OUT.value, result)


if __name__ == "__main__":
    app.run(main)
