"""TFLite size and latency against the limit, across sparsities and export modes.

  python benchmarks/experiments/benchmark_tflite.py --data_path=../shared/data/mnist10k.npz \
      --output_dir=runs/benchmark_tflite

For each model (trained briefly, then cut by magnitude with `apply_sparsity`)
and each sparsity, every export mode is written with `export_tflite` (so every
file is verified) and measured: file bytes; the limit (bytes of the non-zero
weights at the export's precision plus the index bits of an ideal encoding of
their positions, log2 C(n, k) per weight tensor); LiteRT latency (median of
`--invokes` single-example invokes after a warm-up, 1 thread and all threads,
XNNPack on unless the file needs the built-in kernels); test accuracy.
Writes `results.csv`, `results.md` and `size_vs_sparsity.png` to
`--output_dir` and prints the table.

Export modes: float (dense float32), float_sparse, int8 (full-integer, float
I/O), int8_sparse (the default export: runs on the default interpreter, so
weights XNNPack refuses sparse are stored dense), int8_sparse_builtin (every
weight sparse; needs the built-in kernels, XNNPack off).
"""

import csv
import math
import os
import platform
import statistics
import tempfile
import time

import numpy as np
from absl import app, flags

_MODELS = flags.DEFINE_list("models", ["small_cnn", "mobilenet_xnnpack"], "Models (models.MODELS).")
_WIDTHS = flags.DEFINE_list("widths", ["32", "96"], "Width per model (0: default).")
_SPARSITIES = flags.DEFINE_list("sparsities", ["0", "0.5", "0.9", "0.95", "0.99"], "Sparsities.")
_EXPORTS = flags.DEFINE_list("exports", ["float", "float_sparse", "int8", "int8_sparse",
                                         "int8_sparse_builtin"], "Export modes.")
_PATTERN = flags.DEFINE_string("pattern", "", "Sparsity pattern of the cut ('' unstructured).")
_DATASET = flags.DEFINE_string("dataset", "npz", "Dataset (data.load_dataset).")
_DATA_PATH = flags.DEFINE_string("data_path", "../shared/data/mnist10k.npz", "An .npz.")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 6000, "Training examples (0: all).")
_NUM_TEST = flags.DEFINE_integer("num_test", 1000, "Test examples for accuracy.")
_EPOCHS = flags.DEFINE_integer("epochs", 2, "Training epochs of each model.")
_INVOKES = flags.DEFINE_integer("invokes", 200, "Timed invokes (median reported).")
_WARMUP = flags.DEFINE_integer("warmup", 20, "Untimed invokes first.")
_OUTPUT = flags.DEFINE_string("output_dir", "runs/benchmark_tflite", "Where results go.")

EXPORTS = {  # mode -> export_tflite arguments, bytes per non-zero value
    "float": (dict(sparse=False), 4),
    "float_sparse": (dict(sparse=True), 4),
    "int8": (dict(sparse=False, quantize="int8"), 1),
    "int8_sparse": (dict(sparse=True, quantize="int8"), 1),
    "int8_sparse_builtin": (dict(sparse=True, quantize="int8", interpreter="builtin"), 1),
}


def limit_bytes(weights, bytes_per_value: int) -> float:
    """Non-zero values at the given precision plus log2 C(n, k) index bits per tensor."""
    total = 0.0
    for w in weights:
        n, k = w.size, int(np.count_nonzero(w))
        index_bits = (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)
        total += k * bytes_per_value + index_bits / 8
    return total


def latency_us(path, x, num_threads, builtin, invokes, warmup) -> float:
    from deadwood_tf import litert

    interpreter = litert.interpreter(path, num_threads, builtin)
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], [1, *x.shape[1:]])
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], litert.quantize_input(x[:1], inp))
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(invokes):
        t = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - t)
    return 1e6 * statistics.median(times)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5), squeeze=False)
    for ax, model in zip(axes[0], models):
        mine = [r for r in rows if r["model"] == model]
        for mode in dict.fromkeys(r["export"] for r in mine):
            pts = sorted((r["sparsity"], r["bytes"]) for r in mine if r["export"] == mode)
            ax.plot(*zip(*pts), "o-", label=mode)
        for precision, style in (("float", "k--"), ("int8", "k:")):
            pts = sorted({(r["sparsity"], r["limit_bytes"]) for r in mine
                          if r["export"] == precision + "_sparse"})
            if pts:
                ax.plot(*zip(*pts), style, label=f"limit ({precision})")
        ax.set_yscale("log")
        ax.set_xlabel("sparsity")
        ax.set_ylabel("file bytes")
        ax.set_title(model)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    unknown = [e for e in _EXPORTS.value if e not in EXPORTS]
    if unknown:
        raise app.UsageError(f"--exports: expected a list of {list(EXPORTS)}. Received: {unknown}")
    if len(_WIDTHS.value) != len(_MODELS.value):
        raise app.UsageError("--widths: expected one width per model in --models. "
                             f"Received: {_WIDTHS.value} for {_MODELS.value}")
    import keras

    import deadwood_tf as dw
    from deadwood_tf import data, models, pruning_impl

    sparsities = [pruning_impl.check_sparsity(float(s), "sparsities") for s in _SPARSITIES.value]
    ds = data.load_dataset(_DATASET.value, _DATA_PATH.value, _NUM_TRAIN.value, _NUM_TEST.value)
    x_test, y_test = ds.x_test, ds.y_test
    threads = os.cpu_count() or 1
    rows = []
    os.makedirs(_OUTPUT.value, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="benchmark_tflite_")
    for name, width in zip(_MODELS.value, _WIDTHS.value):
        keras.utils.set_random_seed(0)
        model = models.build_model(name, ds.input_shape, ds.num_classes, int(width))
        model.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(ds.x_train, ds.y_train, epochs=_EPOCHS.value, batch_size=128, verbose=2)
        for s in sparsities:
            wrapped = dw.prune_model(model)
            dw.apply_sparsity(wrapped, s, pattern=_PATTERN.value or None)
            plain = dw.strip_pruning(wrapped)
            weights = [np.asarray(v.numpy()) for v in _prunable(plain)]
            for mode in _EXPORTS.value:
                kwargs, value_bytes = EXPORTS[mode]
                path = os.path.join(tmp, f"{name}_{s}_{mode}.tflite")
                if kwargs.get("quantize") == "int8":
                    kwargs = dict(kwargs, representative_data=ds.x_train[:256])
                info = dw.export_tflite(plain, path, sample_inputs=x_test, sample_labels=y_test,
                                        **kwargs)
                builtin = not info["runs_on_default_interpreter"]
                row = {"model": name, "parameters": int(sum(w.size for w in weights)),
                       "sparsity": s, "export": mode, "bytes": info["bytes"],
                       "limit_bytes": round(limit_bytes(weights, value_bytes)),
                       "latency_us_1thread": latency_us(path, x_test, 1, builtin,
                                                        _INVOKES.value, _WARMUP.value),
                       f"latency_us_{threads}threads": latency_us(
                           path, x_test, threads, builtin, _INVOKES.value, _WARMUP.value),
                       "xnnpack": not builtin, "accuracy": info["accuracy"],
                       "keras_accuracy": info["keras_accuracy"],
                       "sparse_tensors": sum(t["storage"] == "sparse" for t in
                                             dw.export.tflite_sparsity(path)["tensors"])}
                row["bytes_over_limit"] = row["bytes"] / row["limit_bytes"]
                rows.append(row)
                print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()},
                      flush=True)
    fields = list(rows[0])
    with open(os.path.join(_OUTPUT.value, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| model | sparsity | export | bytes | limit | bytes/limit | us 1 thread | "
             f"us {threads} threads | XNNPack | accuracy | sparse tensors |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['sparsity']} | {r['export']} | {r['bytes']:,} | "
            f"{r['limit_bytes']:,} | {r['bytes_over_limit']:.2f} | {r['latency_us_1thread']:.0f} | "
            f"{r[f'latency_us_{threads}threads']:.0f} | {'yes' if r['xnnpack'] else 'no'} | "
            f"{100 * r['accuracy']:.1f} % | {r['sparse_tensors']} |")
    table = "\n".join(lines)
    machine = f"{platform.machine()}, {threads} CPU cores, {platform.platform()}"
    with open(os.path.join(_OUTPUT.value, "results.md"), "w") as f:
        f.write(f"{table}\n\n{machine}\n")
    plot(rows, os.path.join(_OUTPUT.value, "size_vs_sparsity.png"))
    print(table)
    print(machine)


def _prunable(model):
    from deadwood_tf import prune_registry

    return [v for _, _, v in prune_registry.prunable_variables(model)]


if __name__ == "__main__":
    app.run(main)
