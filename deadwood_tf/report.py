"""The run's report: report.json (every figure), report.md and PNG plots."""

from __future__ import annotations

import datetime
import os

import numpy as np

from deadwood_tf import atomic, provenance


class _Figures:
    """Saves each figure into `workdir` and remembers its file by key."""

    def __init__(self, workdir, plt):
        self.workdir, self.plt, self.files = workdir, plt, {}

    def save(self, fig, key, name):
        fig.tight_layout()
        fig.savefig(os.path.join(self.workdir, name), dpi=100)
        self.plt.close(fig)
        self.files[key] = name


def _plot_sparsity(out, report):
    rows = report["sparsity"]["weights"]
    fig, ax = out.plt.subplots(figsize=(max(5, 0.6 * len(rows) + 2), 3.5))
    ax.bar(range(len(rows)), [r["sparsity"] for r in rows], color="#4c72b0")
    ax.axhline(report["sparsity"]["sparsity"], color="k", ls="--", lw=1,
               label=f"global {report['sparsity']['sparsity']:.3f}")
    ax.set_xticks(range(len(rows)), [r["name"] for r in rows], rotation=45, ha="right")
    ax.set_ylabel("sparsity")
    ax.set_ylim(0, 1)
    ax.set_title("Sparsity per layer")
    ax.legend()
    out.save(fig, "sparsity", "sparsity_per_layer.png")


def _plot_accuracy(out, report):
    history = report["history"]
    if not history:
        return
    epochs = [int(h["epoch"]) + 1 for h in history]
    fig, ax = out.plt.subplots(figsize=(6, 3.5))
    for key, label in (("accuracy", "train clean"), ("adv_accuracy", "train adversarial"),
                       ("val_accuracy", "test clean"),
                       ("val_pgd_accuracy", "test PGD (subset)")):
        if all(key in h for h in history):
            ax.plot(epochs, [h[key] for h in history], marker="o", label=label)
    ax2 = ax.twinx()
    ax2.plot(epochs, [h.get("sparsity", np.nan) for h in history], color="grey", ls=":",
             label="sparsity")
    ax2.set_ylabel("sparsity (dotted)")
    ax2.set_ylim(0, 1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy and robust accuracy per epoch")
    ax.legend(loc="lower left", fontsize=8)
    out.save(fig, "accuracy", "accuracy_per_epoch.png")


def _plot_multipliers(out, multipliers):
    fig, ax = out.plt.subplots(figsize=(6, 3.5))
    for name, values in multipliers.items():
        ax.hist(values, bins=50, alpha=0.6, label=f"{name} (mean {values.mean():.2f})")
    ax.set_yscale("log")
    ax.set_xlabel("multiplier value")
    ax.set_ylabel("examples")
    ax.set_title("Distribution of the Lagrange multipliers")
    ax.legend()
    out.save(fig, "multipliers", "multipliers.png")


def _plot_latency(out, report):
    ba = report.get("before_after")
    if not ba or _latency(ba["models"]["teacher"], "float32", "1") is None:
        return
    fig, ax = out.plt.subplots(figsize=(6, 4))
    for key, label, marker in (("clean", "clean", "o"), ("pgd", f"PGD ({ba['pgd']})", "^")):
        xs = [_latency(ba["models"][who], "float32", "1") for who in MODELS]
        ys = [100 * ba["models"][who][key] for who in MODELS]
        ax.plot(xs, ys, marker=marker, ls="--", ms=8, label=label)
        for who, x, y in zip(MODELS, xs, ys):
            ax.annotate(who, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("LiteRT latency, float32, 1 thread (µs per example)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy and PGD accuracy against latency")
    ax.margins(y=0.15)
    # From zero: latencies a few percent apart must look a few percent apart.
    ax.set_xlim(0, 1.25 * max(xs))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out.save(fig, "accuracy_vs_latency", "accuracy_vs_latency.png")


def _plot_hardest(out, report, dataset):
    hard = report["hardest_examples"]
    shape = dataset.x_train.shape[1:]
    if not (len(shape) == 3 and shape[-1] in (1, 3) and hard):
        return
    cols = min(8, len(hard))
    rows_n = int(np.ceil(len(hard) / cols))
    fig, axes = out.plt.subplots(rows_n, cols, figsize=(1.4 * cols, 2.0 * rows_n),
                                 squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, item in zip(axes.ravel(), hard):
        img = dataset.x_train[item["index"]]
        ax.imshow(img[..., 0] if shape[-1] == 1 else img, cmap="gray" if shape[-1] == 1 else None)
        ax.set_title(f"#{item['index']} y={item['label']}\nmu={item['robustness']:.2f}",
                     fontsize=7)
    fig.suptitle("Training examples with the largest robustness multipliers", fontsize=9)
    out.save(fig, "hardest_examples", "hardest_examples.png")


def _plots(workdir, report, dataset, multipliers) -> dict:
    """Draws the run's PNG plots into `workdir`; returns `{key: file name}`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = _Figures(workdir, plt)
    _plot_sparsity(out, report)
    _plot_accuracy(out, report)
    _plot_multipliers(out, multipliers)
    _plot_latency(out, report)
    _plot_hardest(out, report, dataset)
    return out.files


def write_report(workdir, *, config, dataset, metrics, attacks, sparsity, export, history,
                 multipliers, timings, num_hardest: int = 16, before_after=None) -> dict:
    """Writes report.json, report.md and the plots; returns the report dict.

    `before_after`: the teacher against the student (`pipeline.before_after`):
    `{"pattern", "pgd" (the PGD metric's name), "latency": {"threads",
    "rounds", "invokes", "warmup"}, "models": {"teacher"|"student": {"macs"
    (None when unknown), "params", "clean", "pgd", "files": {mode: {"file",
    "bytes", "latency_us": {threads: µs} (absent when not timed)}}}}}`."""
    order = np.argsort(-multipliers["robustness"], kind="stable")[:num_hardest]
    hardest = [{"index": int(i), "label": int(dataset.y_train[i]),
                "robustness": float(multipliers["robustness"][i]),
                "fidelity": float(multipliers["fidelity"][i])} for i in order]
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": config.to_dict(),
        "versions": provenance.versions(),
        "machine": provenance.machine(),
        "data": {"name": dataset.name, "num_train": dataset.num_train,
                 "num_test": int(len(dataset.x_test)), "input_shape": list(dataset.input_shape),
                 "num_classes": dataset.num_classes},
        "attacks": {a.name: {"type": type(a).__name__, **a.get_config()} for a in attacks},
        "metrics": metrics,
        "sparsity": sparsity.as_dict(),
        "export": export,
        "multipliers": {k: {"mean": float(v.mean()), "max": float(v.max()),
                            "min": float(v.min())} for k, v in multipliers.items()},
        "hardest_examples": hardest,
        "history": history,
        "timings": timings,
    }
    if before_after is not None:
        report["before_after"] = before_after
    report["plots"] = _plots(workdir, report, dataset, multipliers)
    atomic.write_json(os.path.join(workdir, "report.json"), report, indent=2, sort_keys=False)
    atomic.write_bytes(os.path.join(workdir, "report.md"), markdown(report).encode())
    return report


def _metrics_table(report) -> list[str]:
    names = list(report["metrics"]["pruned"])
    lines = ["| model | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for who in ("teacher", "pruned"):
        lines.append(f"| {who} | " + " | ".join(
            f"{100 * report['metrics'][who][n]:.1f}" for n in names) + " |")
    return lines


MODELS = ("teacher", "student")


def _latency(row, mode, threads):
    return row["files"].get(mode, {}).get("latency_us", {}).get(threads)


def _ratio(after, before) -> str:
    return f"{after / before:.2f}x" if after is not None and before else ""


def _before_after_table(ba) -> list[str]:
    """report.md's before / after table: one row per model, then student / teacher."""
    rows = ba["models"]
    modes = list(rows["teacher"]["files"])
    threads = [str(t) for t in ba["latency"]["threads"]] if ba["latency"]["rounds"] else []
    columns = [("MACs", lambda r: r["macs"]), ("params", lambda r: r["params"])]
    columns += [(f"{m} bytes", lambda r, m=m: r["files"][m]["bytes"]) for m in modes]
    columns += [(f"{m} µs {t}T", lambda r, m=m, t=t: _latency(r, m, t))
                for m in modes for t in threads]
    accuracy = [("clean %", "clean"), (f"PGD % (`{ba['pgd']}`)", "pgd")]

    def number(v):
        if v is None:
            return "n/a"
        return f"{v:,.1f}" if isinstance(v, float) else f"{v:,}"

    names = {"teacher": "teacher (dense)",
             "student": "student (shrunk)" if ba["pattern"] == "channel" else "student (pruned)"}
    lines = ["| model | " + " | ".join(c for c, _ in columns + accuracy) + " |",
             "|---" * (1 + len(columns) + len(accuracy)) + "|"]
    for who in MODELS:
        r = rows[who]
        lines.append(f"| {names[who]} | " + " | ".join(
            [number(get(r)) for _, get in columns] +
            [f"{100 * r[k]:.1f}" for _, k in accuracy]) + " |")
    t, s = rows["teacher"], rows["student"]
    lines.append("| student / teacher | " + " | ".join(
        [_ratio(get(s), get(t)) for _, get in columns] +
        [f"{100 * (s[k] - t[k]):+.1f} pt" for _, k in accuracy]) + " |")
    return lines


def _before_after_notes(report) -> list[str]:
    ba = report["before_after"]
    lat, rows = ba["latency"], ba["models"]
    files = ", ".join(f"`{f['file']}`" for who in MODELS for f in rows[who]["files"].values())
    out = [f"Files: {files}. Accuracy: the Keras models on the evaluation's test examples."]
    if lat["rounds"]:
        m = report["machine"]
        out.append(
            "Latency: LiteRT's default interpreter (XNNPack), one example per invoke, "
            f"{'/'.join(map(str, lat['threads']))} threads; all files timed interleaved "
            f"(`litert.time_files`): the median over {lat['rounds']} rounds of the mean of "
            f"{lat['invokes']} invokes, after {lat['warmup']} warm-up invokes, on "
            f"{m['platform']} ({m['cpu_count']} CPUs). On a shared machine absolute times "
            "vary; the ratios of files timed together vary less.")
    else:
        out.append("Latency: not measured (`report.latency_rounds=0`).")
    if ba["pattern"] != "channel":
        out.append("The student's file stores its zeros sparse; LiteRT unpacks them when it "
                   "loads the file, and dense kernels compute every MAC: fewer bytes, not less "
                   "time (`prune.pattern=channel` removes whole channels).")
    return out


def summary(report) -> str:
    s = report["sparsity"]
    e = report["export"]
    lines = ["Accuracy (%):"] + _metrics_table(report) + [
        f"Global sparsity {s['sparsity']:.4f} ({s['zeros']:,} of {s['size']:,} prunable weights)",
        f"TFLite: {e['bytes']:,} bytes (dense {e['dense_bytes']:,}), max |diff| to Keras "
        f"{e['max_abs_diff']:.2g}, test accuracy {100 * e['test_accuracy']:.1f}%",
        f"Total time {report['timings'].get('total_s', 0):.0f} s"]
    if report.get("before_after"):
        lines[-1:-1] = ["Before / after:", *_before_after_table(report["before_after"])]
    return "\n".join(lines)


def markdown(report) -> str:
    c = report["config"]
    s = report["sparsity"]
    e = report["export"]
    out = [f"# Deadwood run: {report['data']['name']}, {c['model']['name']}, "
           f"target sparsity {c['prune']['target_sparsity']}", "",
           f"{report['date']} on {report['machine']['platform']} "
           f"({report['machine']['cpu_count']} CPUs); TensorFlow {report['versions']['tensorflow']}, "
           f"Keras {report['versions']['keras']}.", "",
           "## Accuracy (%)", "", *_metrics_table(report), "",
           "Attacks: " + "; ".join(f"`{n}`: {a}" for n, a in report["attacks"].items()), "",
           "## Sparsity", "", "| weight | size | zeros | sparsity |", "|---|---|---|---|"]
    for w in s["weights"]:
        out.append(f"| {w['name']} | {w['size']:,} | {w['zeros']:,} | {w['sparsity']:.4f} |")
    out += [f"| **global** | {s['size']:,} | {s['zeros']:,} | {s['sparsity']:.4f} |", "",
            "## Export", "",
            f"`model.tflite`: {e['bytes']:,} bytes; the same export with dense storage "
            f"{e['dense_bytes']:,} bytes. Max |difference| to Keras {e['max_abs_diff']:.3g}; "
            f"top-1 agreement {e['top1_agreement']:.3f}; accuracy of the file on the test set "
            f"{100 * e['test_accuracy']:.1f}%; runs on LiteRT's default interpreter: "
            f"{e['runs_on_default_interpreter']}.", "",
            "## Multipliers", ""]
    if report.get("before_after"):
        notes = _before_after_notes(report)
        if report["before_after"]["pattern"] == "channel":
            notes.insert(0, "The student is the shrunk model (fewer filters, verified against "
                            "the masked model): `model.keras` and `model.tflite`.")
        out[-2:-2] = ["## Before / after", "", *_before_after_table(report["before_after"]),
                      "", "\n\n".join(notes), ""]
    for k, v in report["multipliers"].items():
        out.append(f"- {k}: mean {v['mean']:.3f}, min {v['min']:.3f}, max {v['max']:.3f}")
    out += ["", "## Timings (s)", ""]
    out += [f"- {k}: {v:.1f}" for k, v in report["timings"].items()]
    out += ["", "## Plots", ""]
    out += [f"![{k}]({v})" for k, v in report["plots"].items()]
    return "\n".join(out) + "\n"
