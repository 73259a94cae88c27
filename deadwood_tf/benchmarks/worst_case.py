"""Per-example worst case over strong attacks, for the headline models.

On the first `worst.examples` digits of the row's split (test, or validation
for selection), a digit counts as robust only if it is classified correctly
clean and under every attack of a cascade, each run only on the digits every
earlier one left correct (`autoattack.worst_case`):

1. PGD-`eval.pgd_steps` with `worst.pgd_restarts` random restarts (cleverhans);
2. APGD-CE, `worst.apgd_steps` iterations (AutoAttack's schedule, `autoattack.apgd`);
3. APGD-T, the targeted DLR loss against the top `worst.apgd_targets` other
   classes (`autoattack.apgd_targeted`);
4. Square, `worst.square_queries` queries (`autoattack.square`); left out with
   `worst.square = False` (selection, where its cost matters).

`accuracy[name]` is the fraction still robust after that attack and every one
before it, so `accuracy["worst"]` is the last. `square_only` counts the digits
Square broke that every gradient attack missed; `masking` flags a row where
they exceed `MASKING_GAP` of the digits: a gradient-free attack finding what
gradients cannot is the sign of gradient masking.

Writes `<rows dir>/worst_aa/<method>_<sparsity>_seed<seed>.json` (rows dir:
`<results_dir>/<protocol>/`, or its `validation/`), with `evaluator` naming
this cascade. The rows in `worst/` came from an earlier evaluator (ART's APGD
with a small initial step, and its Square over every digit, seed 0 only);
`masking()` reads their flag.
"""

from __future__ import annotations

import datetime
import os

import keras
import numpy as np
import tensorflow as tf

from deadwood_tf import attacks as attacks_lib
from deadwood_tf import autoattack
from deadwood_tf.atomic import write_json
from deadwood_tf.benchmarks import runner
from deadwood_tf.provenance import machine, versions

MASKING_GAP = 0.01  # more than 1 point of the digits
EVALUATOR = "deadwood_tf.autoattack cascade: PGD restarts > APGD-CE > APGD-T > Square"
FOLDER = "worst_aa"


def masking(accuracy) -> bool:
    """The masking flag of an old (`worst/`) row's `accuracy`: ART's Square,
    run on every digit, below PGD-20 with restarts by more than `MASKING_GAP`."""
    return bool(accuracy["square"] < accuracy["pgd_restarts"] - MASKING_GAP)


def cascade(config, model_fn, seed=0) -> list:
    """`[(name, attack(x, y) -> x_adv)]`: the cascade `config.worst` describes,
    its random draws seeded by `seed`."""
    e, a, w = config.eval, config.attack, config.worst
    if a.norm not in ("linf", "inf", "l_inf"):
        raise ValueError("Invalid value for `attack.norm`: the worst case runs L-inf attacks "
                         f"only. Received: {a.norm!r}")
    bounds = dict(clip_min=float(a.clip_min), clip_max=float(a.clip_max))
    pgd = attacks_lib.make_attack("pgd", e.eps, steps=e.pgd_steps, step_size=e.pgd_step_size,
                                  random_start=True, norm=a.norm, **bounds)
    pgd_step = tf.function(lambda x, y: pgd(model_fn, x, tf.cast(y, tf.int64)),
                           reduce_retracing=True)
    out = [(f"pgd{e.pgd_steps}_restart{r}", lambda x, y: pgd_step(x, y).numpy())
           for r in range(int(w.pgd_restarts))]
    out.append(("apgd_ce", lambda x, y: autoattack.apgd(
        model_fn, x, y, e.eps, loss="ce", n_iter=int(w.apgd_steps), seed=seed, **bounds)))
    out.append(("apgd_t", lambda x, y: autoattack.apgd_targeted(
        model_fn, x, y, e.eps, n_targets=int(w.apgd_targets), n_iter=int(w.apgd_steps),
        seed=seed, **bounds)))
    if w.square:
        out.append(("square", lambda x, y: autoattack.square(
            model_fn, x, y, e.eps, n_queries=int(w.square_queries), p_init=float(w.square_p_init),
            seed=seed, **bounds)))
    return out


def evaluate(config, model, x, y, seed=0) -> dict:
    """The cascade's accuracies (clean, after each attack, PGD restarts together,
    gradient attacks together, worst case), its seconds and the masking flag."""
    fn = attacks_lib.logits_fn(model)
    model_fn = lambda t: fn(t, training=False)  # noqa: E731
    tf.random.set_seed(seed)  # cleverhans' random starts
    attacks = cascade(config, model_fn, seed)
    result = autoattack.worst_case(model_fn, x, y, attacks, config.eval.eps,
                                   clip_min=float(config.attack.clip_min),
                                   clip_max=float(config.attack.clip_max),
                                   batch_size=int(config.worst.batch_size) or None, verbose=True)
    robust = result["robust"]
    names = [name for name, _ in attacks]
    acc = {k: float(v.mean()) for k, v in robust.items()}
    pgd = [n for n in names if n.startswith("pgd")]
    acc.update(pgd_restarts=acc[pgd[-1] if pgd else "clean"], gradient_worst=acc["apgd_t"],
               worst=acc[names[-1]])
    square_only = int(np.sum(robust["apgd_t"] & ~robust["square"])) if "square" in robust else 0
    return {"attacks": names, "accuracy": acc, "attack_seconds": result["seconds"],
            "attacked": result["attacked"], "square_only": square_only,
            "masking": bool(square_only > MASKING_GAP * len(x)) if "square" in robust else None,
            "num_examples": int(len(x))}


def selection_figure(config, model, x, y, selection: dict) -> dict:
    """`evaluate` under a search's `selection` settings (its keys: `pgd_restarts`,
    `apgd_steps`, `apgd_targets`, `square`; `examples` is applied by the caller),
    with `evaluator` and the settings recorded: the figure a search chooses on."""
    config = config.copy_and_resolve_references()
    known = {"examples", "pgd_restarts", "apgd_steps", "apgd_targets", "square"}
    unknown = sorted(set(selection) - known)
    if unknown:
        raise ValueError(f"Invalid value for `selection`: unknown keys {unknown}; expected "
                         f"some of {sorted(known)}. Received: {selection!r}")
    with config.unlocked():
        for key in known - {"examples"}:
            if key in selection:
                config.worst[key] = selection[key]
    return {**evaluate(config, model, x, y), "evaluator": EVALUATOR,
            "selection": dict(selection)}


def run(config, methods, results_dir, workdir, seeds=None, variant="") -> list:
    """The worst case of each `methods` x `config.sparsities` x `seeds` model
    (`seeds`: default `config.seeds`) on `config.split`; returns the rows written.

    A model is read from `<workdir>/<protocol>/models/<split>_<row name>.keras`
    (runner saves it there); a row already written is skipped.
    """
    _, sparsities, config_seeds = runner.check_config(config)
    seeds = config_seeds if seeds is None else [int(s) for s in seeds]
    config = config.copy_and_resolve_references()
    _, (x_eval, y_eval) = runner.load_data(config)
    n = int(config.worst.examples)
    x, y = x_eval[:n], y_eval[:n]
    out_dir = os.path.join(runner.rows_dir(config, results_dir), FOLDER)
    written = []
    for seed in seeds:
        for sparsity in sparsities:
            for method in methods:
                if method not in runner.METHODS:
                    raise ValueError(f"Invalid value for `worst_case`: unknown method {method!r}; "
                                     f"expected names from {tuple(runner.METHODS)}.")
                s = 0.0 if runner.METHODS[method].group == "reference" else sparsity
                name = runner.row_name(method, s, seed, variant)
                path = os.path.join(out_dir, name + ".json")
                if os.path.exists(path):
                    continue
                model_path = os.path.join(workdir, config.protocol, "models",
                                          f"{config.split}_{name}.keras")
                if not os.path.exists(model_path):
                    print(f"== worst case: no model {model_path}; run its row first", flush=True)
                    continue
                print(f"== worst case: {name} on {len(x)} {config.split} examples", flush=True)
                row = {"method": method, "target_sparsity": s, "seed": seed, "variant": variant,
                       "split": config.split, "evaluator": EVALUATOR,
                       "fingerprint": runner.fingerprint(config, method),
                       "protocol": config.protocol,
                       **evaluate(config, keras.models.load_model(model_path), x, y, seed),
                       "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                           timespec="seconds"),
                       "versions": versions(),
                       "machine": {**machine(), "load_average": os.getloadavg()},
                       "config": config.to_dict()}
                write_json(path, row)
                written.append(path)
                a, t = row["accuracy"], row["attack_seconds"]
                print(f"   {name}: clean {100 * a['clean']:.1f}  PGD restarts "
                      f"{100 * a['pgd_restarts']:.1f}  APGD-CE {100 * a['apgd_ce']:.1f}  APGD-T "
                      f"{100 * a['apgd_t']:.1f}  worst {100 * a['worst']:.1f}  masking "
                      f"{row['masking']}  ({sum(t.values()):.0f} s)", flush=True)
    return written
