"""Deadwood against the alternatives, side by side: `run_benchmark(config, workdir)`.

Every method starts from the same trained dense model and gets the same epoch
and attack budget after it (see configs/benchmark_*.py). Per method and
sparsity: clean, FGSM and PGD accuracy, gradient-free (ART Square) accuracy on a
subset, measured sparsity, sparse and dense TFLite bytes, training wall time.

Outputs in `workdir`: results.json (with versions and machine), results.csv,
results.md (the table), robust_accuracy_vs_sparsity.png, and rows.jsonl, which
makes an interrupted benchmark resume where it stopped.
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import time

import keras

from deadwood_tf import attacks as attacks_lib
from deadwood_tf import baselines, export, prune, report, train
from deadwood_tf import data as data_lib
from deadwood_tf import models as models_lib
from deadwood_tf.adversarial import AdversarialTraining
from deadwood_tf.callbacks import DeadwoodCallback

METHODS = ("dense", "dense_at", "tfmot", "tfmot_at", "global_magnitude_at", "hydra",
           "deadwood", "deadwood_one_shot")
PRUNING_METHODS = METHODS[2:]
LABELS = {
    "dense": "dense, natural training",
    "dense_at": "dense, adversarially trained",
    "tfmot": "tfmot per-layer magnitude + natural fine-tune",
    "tfmot_at": "tfmot per-layer magnitude + adversarial fine-tune",
    "global_magnitude_at": "one-shot global magnitude + adversarial fine-tune",
    "hydra": "HYDRA (scores under AT) + adversarial fine-tune",
    "deadwood": "Deadwood (defaults: gradual global cut)",
    "deadwood_one_shot": "Deadwood, paper's one-shot form",
}


def _methods(config):
    # `--config.methods=a,b` arrives as one string: accept commas as separators.
    names = [n.strip() for m in config.methods for n in str(m).split(",") if n.strip()]
    names = names or list(METHODS)
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ValueError(f"Invalid value for `methods`: unknown {unknown}; expected names "
                         f"from {METHODS}. Received: {names}")
    return names


def _dense_models(config, ds, workdir, verbose):
    """The dense natural model and the dense adversarially trained one (cached)."""
    paths = {k: os.path.join(workdir, f"{k}.keras") for k in ("dense", "dense_at")}
    meta_path = os.path.join(workdir, "dense_times.json")
    if all(os.path.exists(p) for p in paths.values()) and os.path.exists(meta_path):
        train.banner("Dense models: found in the work directory, loading them")
        times = json.load(open(meta_path))
        return {k: keras.models.load_model(p) for k, p in paths.items()}, times
    keras.utils.set_random_seed(config.seed)
    model = models_lib.build_model(config.model.name, ds.input_shape, ds.num_classes,
                                   config.model.width, config.model.depth)
    c = config.dense
    train.banner(f"Dense model: {c.epochs} epochs of natural training "
                 f"({model.count_params():,} parameters)")
    t0 = time.time()
    model.compile(keras.optimizers.Adam(c.learning_rate),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(ds.train_pipeline(config.data.batch_size, config.seed, with_index=False),
              epochs=c.epochs, verbose=verbose)
    times = {"dense": time.time() - t0}
    train._save_keras_atomically(model, paths["dense"])
    train.banner(f"Dense model: {c.adversarial_epochs} epochs of adversarial training")
    t0 = time.time()
    at = AdversarialTraining(model, train.make_attack(config.attack))
    at.compile(keras.optimizers.Adam(c.learning_rate))
    at.fit(ds.train_pipeline(config.data.batch_size, config.seed + 1, with_index=False),
           epochs=c.adversarial_epochs, verbose=verbose)
    times["dense_at"] = times["dense"] + time.time() - t0
    train._save_keras_atomically(model, paths["dense_at"])
    with open(meta_path, "w") as f:
        json.dump(times, f)
    return {"dense": keras.models.load_model(paths["dense"]), "dense_at": model}, times


def _deadwood(config, dense_at, ds, sparsity, one_shot, verbose):
    d, p = config.deadwood, config.prune
    schedule, unit = (None, "step")
    if not one_shot:
        import tensorflow_model_optimization as tfmot

        schedule = tfmot.sparsity.keras.PolynomialDecay(
            0.0, sparsity, begin_step=0, end_step=d.solve_epochs, power=d.power, frequency=1)
        unit = "epoch"
    model = train.make_deadwood_model(config, dense_at, ds.num_train)
    model.compile(keras.optimizers.Adam(p.learning_rate))
    model.fit(ds.train_pipeline(config.data.batch_size, config.seed + 2),
              epochs=p.epochs, verbose=verbose, callbacks=[DeadwoodCallback(
                  sparsity, prune_epoch=d.solve_epochs, schedule=schedule, schedule_unit=unit,
                  min_keep=d.min_keep, dual_step_size=d.dual_step_size,
                  max_multiplier=d.max_multiplier,
                  finetune_sparsity_weight=(d.finetune_sparsity_weight
                                            if d.finetune_sparsity_weight >= 0 else None))])
    return prune.strip_pruning(model)


def _prune(method, config, dense_at, ds, sparsity, verbose):
    p, attack = config.prune, train.make_attack(config.attack)
    common = dict(epochs=p.epochs, batch_size=config.data.batch_size,
                  learning_rate=p.learning_rate, seed=config.seed + 2, verbose=verbose)
    if method in ("tfmot", "tfmot_at"):
        return baselines.tfmot_magnitude(
            dense_at, ds, sparsity, model_name=config.model.name, width=config.model.width,
            depth=config.model.depth, pruning_epochs=config.tfmot.pruning_epochs,
            frequency=config.tfmot.frequency, attack=attack if method == "tfmot_at" else None,
            **common)
    if method == "global_magnitude_at":
        return baselines.global_magnitude_at(dense_at, ds, sparsity, attack=attack, **common)
    if method == "hydra":
        return baselines.hydra(dense_at, ds, sparsity, attack=attack,
                               score_epochs=config.hydra.score_epochs,
                               score_learning_rate=config.hydra.score_learning_rate, **common)
    return _deadwood(config, dense_at, ds, sparsity, method == "deadwood_one_shot", verbose)


def _evaluate(config, model, ds, workdir, tag):
    e, a = config.eval, config.attack
    n = e.num_examples or len(ds.x_test)
    x, y = ds.x_test[:n], ds.y_test[:n]
    row = attacks_lib.evaluate_robustness(model, x, y, train.eval_attacks(config))
    names = list(row)
    out = {"clean": row[names[0]], "pgd": row[names[-1]],
           "fgsm": row[names[1]] if e.fgsm else None}
    if e.square_examples:
        square = attacks_lib.SquareAttack(e.eps, norm=a.norm, max_queries=e.square_queries,
                                          clip_min=a.clip_min, clip_max=a.clip_max)
        m = min(e.square_examples, n)
        sq = attacks_lib.evaluate_robustness(model, x[:m], y[:m], [square], batch_size=m)
        out["square"] = sq[square.name]
        out["square_clean"] = sq["clean"]  # same subset, to read the two together
    out["sparsity"] = prune.sparsity_report(model).sparsity
    info = export.export_tflite(model, os.path.join(workdir, "tflite", f"{tag}.tflite"),
                                sample_inputs=ds.x_test[:128])
    out["tflite_bytes"] = info["bytes"]
    out["tflite_dense_bytes"] = info["dense_bytes"]
    return out


def _load_rows(path):
    rows = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    rows[(r["method"], r["target_sparsity"])] = r
    return rows


def run_benchmark(config, workdir: str) -> dict:
    """Runs every method of `config.methods` at every sparsity; writes the results."""
    methods = _methods(config)
    os.makedirs(os.path.join(workdir, "tflite"), exist_ok=True)
    verbose = config.verbose
    started = time.time()
    ds = data_lib.load_dataset(config.data.name, config.data.path, config.data.num_train,
                               config.data.num_test, config.seed)
    train.banner(f"Benchmark: {ds.name}, {ds.num_train} training / {len(ds.x_test)} test "
                 f"examples; {config.model.name}; sparsities {list(config.sparsities)}")
    dense, dense_times = _dense_models(config, ds, workdir, verbose)
    rows_path = os.path.join(workdir, "rows.jsonl")
    rows = _load_rows(rows_path)

    def record(row):
        rows[(row["method"], row["target_sparsity"])] = row
        with open(rows_path, "a") as f:
            f.write(json.dumps(row) + "\n")

    for name in ("dense", "dense_at"):
        if name in methods and (name, 0.0) not in rows:
            train.banner(f"Evaluating {LABELS[name]}")
            record({"method": name, "target_sparsity": 0.0, "train_seconds": dense_times[name],
                    **_evaluate(config, dense[name], ds, workdir, name)})
    for sparsity in config.sparsities:
        for method in methods:
            if method not in PRUNING_METHODS or (method, sparsity) in rows:
                continue
            train.banner(f"{LABELS[method]} -> sparsity {sparsity}")
            keras.utils.set_random_seed(config.seed + 3)
            t0 = time.time()
            model = _prune(method, config, dense["dense_at"], ds, sparsity, verbose)
            seconds = time.time() - t0
            row = {"method": method, "target_sparsity": sparsity, "train_seconds": seconds,
                   **_evaluate(config, model, ds, workdir, f"{method}_{sparsity:g}")}
            record(row)
            print(f"{method} @ {sparsity}: clean {100 * row['clean']:.1f}  "
                  f"PGD {100 * row['pgd']:.1f}  sparsity {row['sparsity']:.4f}  "
                  f"{seconds:.0f} s", flush=True)

    ordered = [rows[k] for k in sorted(rows, key=lambda k: (k[1], METHODS.index(k[0])))]
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": config.to_dict(), "versions": report._versions(), "machine": report._machine(),
        "data": {"name": ds.name, "num_train": ds.num_train, "num_test": int(len(ds.x_test))},
        "rows": ordered, "wall_seconds": time.time() - started,
    }
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2, default=float)
    _write_csv(os.path.join(workdir, "results.csv"), ordered)
    table = markdown_table(ordered)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(table + "\n")
    _plot(os.path.join(workdir, "robust_accuracy_vs_sparsity.png"), ordered, config)
    train.banner("Results (accuracy in %)")
    print(table, flush=True)
    return results


COLUMNS = ("method", "target_sparsity", "sparsity", "clean", "fgsm", "pgd", "square",
           "square_clean", "tflite_bytes", "tflite_dense_bytes", "train_seconds")


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)


def _pct(v):
    return "" if v is None else f"{100 * v:.1f}"


def markdown_table(rows) -> str:
    lines = ["| method | target | sparsity | clean | FGSM | PGD | Square (subset: clean / robust) "
             "| TFLite KB (dense) | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        square = (f"{_pct(r.get('square_clean'))} / {_pct(r.get('square'))}"
                  if r.get("square") is not None else "")
        lines.append(
            f"| {r['method']} | {r['target_sparsity']:g} | {r['sparsity']:.4f} | "
            f"{_pct(r['clean'])} | {_pct(r.get('fgsm'))} | {_pct(r['pgd'])} | {square} | "
            f"{r['tflite_bytes'] / 1024:.0f} ({r['tflite_dense_bytes'] / 1024:.0f}) | "
            f"{r['train_seconds']:.0f} |")
    return "\n".join(lines)


def _plot(path, rows, config):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((axes[0], "pgd", "PGD accuracy"), (axes[1], "clean", "clean accuracy")):
        for method in PRUNING_METHODS:
            pts = sorted((r["target_sparsity"], r[key]) for r in rows if r["method"] == method)
            if pts:
                ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o",
                        label=method, lw=2.5 if method == "deadwood" else 1.2)
        for method, style in (("dense_at", "--"), ("dense", ":")):
            ref = [r[key] for r in rows if r["method"] == method]
            if ref:
                ax.axhline(100 * ref[0], color="k", ls=style, lw=1, label=method)
        ax.set_xlabel("sparsity")
        ax.set_ylabel(f"{title} (%)")
        ax.set_title(f"{title}, eps {config.eval.eps:g}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
