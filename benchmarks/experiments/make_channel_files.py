"""Channel-pruned TFLite files of a trained model, for latency only (no training).

  python benchmarks/experiments/make_channel_files.py --dense=runs/x/dense.keras \
      --data_path=../shared/data/cifar10k.npz --output_dir=runs/resnet_files

For each FLOPs target and criterion (group L2 norm over size, over MACs, L1
filter norm), the dense model is cut, shrunk (verified) with and without
rounding, and exported as dense float32 and int8 TFLite. Prints MACs,
parameters and bytes per file; time the files with benchmarks/experiments/time_tflite.py.
"""

import json
import os

import keras
import numpy as np
from absl import app, flags

import deadwood_tf as dw
from deadwood_tf import channel_groups as cg
from deadwood_tf.shrink import shrink_model

_DENSE = flags.DEFINE_string("dense", "", "Trained dense .keras.")
_DATA = flags.DEFINE_string("data_path", "../shared/data/cifar10k.npz", "An .npz (calibration).")
_CALIBRATION = flags.DEFINE_integer("calibration", 64, "int8 calibration examples.")
_TARGETS = flags.DEFINE_list("targets", ["0.25", "0.5", "0.75"], "FLOPs fractions removed.")
_CRITERIA = flags.DEFINE_list("criteria", ["size", "macs", "l1_filter"], "Group scores.")
_ROUND = flags.DEFINE_list("round_to", ["1", "8"], "Rounding of kept channels.")
_ONLY = flags.DEFINE_list("only", [], "Tags to make (default: all not yet made).")
_OUTPUT = flags.DEFINE_string("output_dir", "runs/channel_files", "Where files go.")


def main(argv):
    del argv
    os.makedirs(_OUTPUT.value, exist_ok=True)
    dense = keras.models.load_model(_DENSE.value)
    x = np.load(_DATA.value)["x_train"].astype("float32") / 255.0
    x = x.reshape(len(x), *dense.input_shape[1:])
    x = x[np.random.default_rng(0).permutation(len(x))[:max(_CALIBRATION.value, 32)]]
    rows = []

    def export(model, tag, **info):
        row = dict(tag=tag, macs=cg.channel_groups(model).total_macs,
                   params=model.count_params(), **info)
        for quantize, suffix in ((None, "fp32"), ("int8", "int8")):
            extra = {"representative_data": x[:_CALIBRATION.value]} if quantize else {}
            try:
                r = dw.export_tflite(model, os.path.join(_OUTPUT.value, f"{tag}_{suffix}.tflite"),
                                     sparse=False, quantize=quantize, sample_inputs=x[:32],
                                     **extra)
                row[f"bytes_{suffix}"] = r["bytes"]
            except (RuntimeError, ValueError) as e:  # recorded: no file LiteRT runs
                row[f"error_{suffix}"] = str(e)
                model.save(os.path.join(_OUTPUT.value, f"{tag}_failed.keras"))
        rows.append(row)
        print(row, flush=True)

    if not os.path.exists(os.path.join(_OUTPUT.value, "dense_int8.tflite")):
        export(dense, "dense")
    for target in [float(t) for t in _TARGETS.value]:
        for criterion in _CRITERIA.value:
            pruned = dw.prune_model(dense)
            groups = cg.channel_groups(pruned)
            if criterion == "l1_filter":
                info = dw.cut_channels(pruned, target, normalize="none", groups=groups,
                                       energies=cg.filter_l1_norms(pruned, groups),
                                       round_to=1)
            else:
                info = dw.cut_channels(pruned, target, normalize=criterion, groups=groups,
                                       round_to=1)
            for round_to in [int(r) for r in _ROUND.value]:
                tag = f"{criterion}_{int(target * 100)}_r{round_to}"
                if _ONLY.value and tag not in _ONLY.value or os.path.exists(
                        os.path.join(_OUTPUT.value, f"{tag}_int8.tflite")):
                    continue
                small = shrink_model(pruned, sample_inputs=x[:16], round_to=round_to)
                widths = [l.filters for l in small.layers if hasattr(l, "filters")]
                export(small, tag, target=target,
                       criterion=criterion, round_to=round_to, widths=widths,
                       flops_removed=info["flops_removed"])
    with open(os.path.join(_OUTPUT.value, "files.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    app.run(main)
