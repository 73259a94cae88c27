"""LiteRT latency of a benchmark protocol's final models (seed 0), as a results file.

  python benchmarks/experiments/benchmark_latency.py --config=configs/benchmark_cifar.py \
      --workdir=runs/benchmark

For the dense adversarially trained model, every channel-pruning row
(`deadwood_channel`, `gradual_channel_at`, `l1_filter_at` and their `_r8`
forms: their saved models are the shrunk ones) and every unstructured `deadwood` row of seed 0, it
exports a float32 file (dense storage; sparse storage for the unstructured
rows, the form that makes their files small) and a full-integer int8 file
(calibrated on 256 training images), verified against Keras by
`export_tflite`, then times them all interleaved (`deadwood_tf.litert.time_files`)
with 1 and 2 threads on the default interpreter (XNNPack). Writes
`<results_dir>/<protocol>/latency/seed0.json`; `tools/benchmark_tables.py`
turns it into the docs' latency table. Run it on a quiet machine: the ratios
between files measured together are what it is for.
"""

import datetime
import json
import os
import platform
import sys
import tempfile
import time

import keras
from absl import app, flags
from ml_collections import config_flags

from deadwood_tf import atomic, export, litert, pipeline, provenance
from deadwood_tf.benchmarks import runner

_CONFIG = config_flags.DEFINE_config_file("config", None, "A configs/benchmark_*.py file.")
_RESULTS = flags.DEFINE_string("results_dir", "benchmarks/results", "Where the rows are.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/benchmark", "Where the rows' models are.")
_THREADS = flags.DEFINE_list("threads", ["1", "2"], "LiteRT num_threads settings.")
_ROUNDS = flags.DEFINE_integer("rounds", 30, "Interleaved rounds per file.")
_INVOKES = flags.DEFINE_integer("invokes", 10, "Timed single-example invokes per round.")
_NOTE = flags.DEFINE_string("machine_note", "", "How quiet the machine was (goes in the file).")
flags.mark_flags_as_required(["config"])

MODELS = ("dense_at", "deadwood") + tuple(
    m for m, v in runner.METHODS.items() if v.group == "structured")


def _command(argv) -> str:
    """The command, without flags naming this machine's paths or notes (the note is
    stored on its own; the workdir holds only models, not results)."""
    return " ".join(a for a in argv if not a.startswith(("--workdir", "--machine_note")))


def main(argv):
    del argv
    config = _CONFIG.value
    folder = os.path.join(_RESULTS.value, config.protocol)
    rows = [r for r in (json.load(open(os.path.join(folder, f)))
                        for f in sorted(os.listdir(folder)) if f.endswith("_seed0.json"))
            if r["method"] in MODELS]
    ds, _ = runner.load_data(config)
    calibration, sample = ds.x_train[:256], ds.x_test[:32]
    tdir = tempfile.mkdtemp(prefix="latency_")
    files = {}
    for r in rows:
        name = runner.row_name(r["method"], r["target_sparsity"], r["seed"])
        path = os.path.join(_WORKDIR.value, config.protocol, "models", f"test_{name}.keras")
        if not os.path.exists(path):
            print(f"== no model {path}: skipped", flush=True)
            continue
        model = keras.models.load_model(path)
        sparse = r["method"] == "deadwood"
        entry = {"method": r["method"], "target": r["target_sparsity"], **pipeline.model_size(model),
                 "clean": r["clean"], "pgd": r["pgd"]}
        for kind, quantize in (("fp32", None), ("int8", "int8")):
            out = os.path.join(tdir, f"{name}_{kind}.tflite")
            info = export.export_tflite(
                model, out, sparse=sparse, quantize=quantize, sample_inputs=sample,
                **({"representative_data": calibration} if quantize else {}))
            entry[f"bytes_{kind}"] = info["bytes"]
            entry[f"file_{kind}"] = os.path.basename(out)
        files[name] = entry
        print(f"== exported {name}: {entry['bytes_fp32']:,} / {entry['bytes_int8']:,} bytes",
              flush=True)
    paths = [os.path.join(tdir, e[f"file_{k}"]) for e in files.values() for k in ("fp32", "int8")]
    t0 = time.time()
    latency = litert.time_files(paths, threads=[int(t) for t in _THREADS.value],
                                rounds=_ROUNDS.value, invokes=_INVOKES.value)
    for e in files.values():
        for t, us in latency.items():
            for k in ("fp32", "int8"):
                e[f"us_{k}_{t}t"] = us[e[f"file_{k}"]]
    result = {"protocol": config.protocol, "seed": 0, "models": files,
              "timing_seconds": time.time() - t0, "rounds": _ROUNDS.value,
              "invokes": _INVOKES.value, "command": _command(sys.argv),
              "machine": {**provenance.machine(), "machine": platform.machine(),
                          "note": _NOTE.value},
              "versions": provenance.versions(),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    atomic.write_json(os.path.join(folder, "latency", "seed0.json"), result)
    print(json.dumps({k: {f: v for f, v in e.items() if f.startswith("us_")}
                      for k, e in files.items()}, indent=1))


if __name__ == "__main__":
    app.run(main)
