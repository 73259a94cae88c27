"""Per-example worst case over strong attacks, for the headline models.

On the first `worst.examples` test digits, a digit counts as robust only if
it is classified correctly clean and under every attack: PGD-20 with
`worst.pgd_restarts` random restarts, APGD-CE and APGD-DLR (ART), and ART's
gradient-free Square attack with `worst.square_queries` queries. Gradient
masking is flagged where Square (which needs no gradient) beats PGD-20 with
restarts by more than 1 point (`masking`); `square_only` counts the examples
Square broke that every gradient attack missed.

Writes `<results_dir>/<protocol>/worst/<method>_<sparsity>_seed0.json`.
"""

from __future__ import annotations

import datetime
import os
import time

import keras
import numpy as np
import tensorflow as tf

from deadwood_tf import attacks as attacks_lib
from deadwood_tf import report
from deadwood_tf.benchmarks import runner

MASKING_GAP = 0.01  # Square below PGD-20 with restarts by more than 1 point


def masking(accuracy) -> bool:
    """The masking flag of a worst-case row's `accuracy`: Square's accuracy is
    lower than PGD-20 with restarts' by more than `MASKING_GAP`."""
    return bool(accuracy["square"] < accuracy["pgd_restarts"] - MASKING_GAP)


def _correct(model_fn, attack, x, y, batch_size=250, name=None):
    """Per-example correctness (bool array) under `attack` (None: clean); with
    `name`, a progress line per batch (Square takes minutes a batch)."""
    out = []
    t0 = time.time()
    for start in range(0, len(x), batch_size):
        if name is not None:
            print(f"   {name}: examples {start}-{min(start + batch_size, len(x))} of {len(x)} "
                  f"({time.time() - t0:.0f} s so far)", flush=True)
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        if attack is not None:
            in_graph = getattr(attack, "in_graph", True)  # ART attacks run on NumPy
            xb = attack(model_fn, tf.constant(xb) if in_graph else xb,
                        tf.constant(yb) if in_graph else yb)
        out.append(np.argmax(np.asarray(model_fn(tf.constant(xb))), -1) == yb)
    return np.concatenate(out)


def worst_case_attacks(config):
    """`{name: attack}`: the restarts of PGD-20, APGD-CE, APGD-DLR and Square."""
    e, a, w = config.eval, config.attack, config.worst
    common = dict(norm=a.norm, clip_min=a.clip_min, clip_max=a.clip_max)
    out = {f"pgd{e.pgd_steps}_restart{r}": attacks_lib.make_attack(
        "pgd", e.eps, steps=e.pgd_steps, step_size=e.pgd_step_size, random_start=True, **common)
        for r in range(w.pgd_restarts)}
    out["apgd_ce"] = attacks_lib.make_attack("apgd", e.eps, steps=w.apgd_steps, loss="ce",
                                             **common)
    out["apgd_dlr"] = attacks_lib.make_attack("apgd", e.eps, steps=w.apgd_steps, loss="dlr",
                                              **common)
    out["square"] = attacks_lib.make_attack("square", e.eps, max_queries=w.square_queries,
                                            **common)
    return out


def evaluate(config, model, x, y) -> dict:
    """Accuracies (clean, each attack, PGD restarts together, gradient attacks
    together, worst case) and the masking flag, on `x, y`."""
    fn = attacks_lib.logits_fn(model)
    model_fn = lambda t: fn(t, training=False)  # noqa: E731
    tf.random.set_seed(0)
    correct = {"clean": _correct(model_fn, None, x, y)}
    seconds = {}
    for name, attack in worst_case_attacks(config).items():
        t0 = time.time()
        correct[name] = _correct(model_fn, attack, x, y, name=name) & correct["clean"]
        seconds[name] = time.time() - t0
        print(f"   {name}: {100 * correct[name].mean():.1f}% robust in {seconds[name]:.0f} s",
              flush=True)
    pgd = np.logical_and.reduce([v for k, v in correct.items() if k.startswith("pgd")])
    gradient = pgd & correct["apgd_ce"] & correct["apgd_dlr"]
    worst = gradient & correct["square"]
    acc = {k: float(v.mean()) for k, v in correct.items()}
    acc.update(pgd_restarts=float(pgd.mean()), gradient_worst=float(gradient.mean()),
               worst=float(worst.mean()))
    return {"accuracy": acc, "attack_seconds": seconds,
            "square_only": int(np.sum(gradient & ~correct["square"])),
            "masking": masking(acc),
            "num_examples": int(len(x))}


def run(config, methods, results_dir, workdir, seed=0) -> list:
    """The worst case of each `methods` x `config.sparsities` model of `seed`."""
    _, sparsities, _ = runner._check(config)
    config = config.copy_and_resolve_references()
    ds, _ = runner.load_data(config)
    n = int(config.worst.examples)
    x, y = ds.x_test[:n], ds.y_test[:n]
    written = []
    for sparsity in sparsities:
        for method in methods:
            if method not in runner.METHODS:
                raise ValueError(f"Invalid value for `worst_case`: unknown method {method!r}; "
                                 f"expected names from {tuple(runner.METHODS)}.")
            s = 0.0 if runner.METHODS[method].group == "reference" else sparsity
            name = runner.row_name(method, s, seed)
            path = os.path.join(results_dir, config.protocol, "worst", name + ".json")
            if os.path.exists(path):
                continue
            model_path = os.path.join(workdir, config.protocol, "models", f"test_{name}.keras")
            if not os.path.exists(model_path):
                print(f"== worst case: no model {model_path}; run its row first", flush=True)
                continue
            print(f"== worst case: {name} on {n} test examples", flush=True)
            model = keras.models.load_model(model_path)
            row = {"method": method, "target_sparsity": s, "seed": seed,
                   "fingerprint": runner._fingerprint(config, method), "protocol": config.protocol,
                   **evaluate(config, model, x, y),
                   "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                       timespec="seconds"),
                   "versions": report._versions(), "config": config.to_dict()}
            runner._write_json(path, row)
            written.append(path)
            a = row["accuracy"]
            print(f"   {name}: clean {100 * a['clean']:.1f}  PGD restarts "
                  f"{100 * a['pgd_restarts']:.1f}  APGD-CE {100 * a['apgd_ce']:.1f}  APGD-DLR "
                  f"{100 * a['apgd_dlr']:.1f}  Square {100 * a['square']:.1f}  worst "
                  f"{100 * a['worst']:.1f}  masking {row['masking']}", flush=True)
    return written
