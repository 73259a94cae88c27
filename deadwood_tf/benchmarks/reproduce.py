"""Rebuilds one committed benchmark row from its own stored config and seed.

`reproduce(row_path)` reads the row's JSON file, takes the config stored in
it (fields added to the benchmark after the row was made take their current
defaults, which are the values the row ran with: see `runner._LATER_FIELDS`),
reruns that one (method, sparsity, seed) from scratch in a scratch directory
(dense models included, unless `workdir` points at cached ones) and compares
the new figures with the committed ones:

    deadwood-benchmark --reproduce=benchmarks/results/mnist_cnn/deadwood_0.95_seed0.json

What a seed fixes and what it does not: the seed fixes every random draw of
the run (initialisation, data order, PGD's random starts), and two reruns in
fresh processes on one machine give the same figures. It does not fix the
order in which TensorFlow's CPU kernels add up partial sums across threads,
the instruction set the kernels use (AVX2, AVX-512, ARM NEON), the library
versions, or what ran before in the process that made the row (the
benchmark trains several rows per process, and the dense models are cached
across runs). Each changes float round-off, which training amplifies, so a
rerun lands near the committed figures, not on them.

The tolerance the protocol promises (`tolerance`): an accuracy lands within
two binomial standard errors of the committed one on the row's evaluation
set, `2 sqrt(p (1 - p) / n)` (1.4-1.6 points for PGD-20 near 86-89% on 2,000
digits; 0.8-0.9 for clean near 96-98%): differences below that are what
resampling the test set would give, and no table can resolve them anyway. The
measured sparsity lands within 1e-4. docs/reproducing.md gives the reruns
behind it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile

import ml_collections

from deadwood_tf.benchmarks import runner
from deadwood_tf.benchmarks.config import benchmark_config

FIGURES = ("clean", "fgsm", "pgd", "sparsity")
SPARSITY_TOLERANCE = 1e-4
STANDARD_ERRORS = 2.0


def tolerance(figure: str, committed: float, num_eval: int) -> float:
    """Largest |new - committed| the protocol promises for `figure` (fractions)."""
    if figure == "sparsity":
        return SPARSITY_TOLERANCE
    if not isinstance(num_eval, int) or num_eval < 1:
        raise ValueError(f"Invalid value for `num_eval`: expected an int >= 1. Received: "
                         f"{num_eval!r}")
    return STANDARD_ERRORS * math.sqrt(committed * (1.0 - committed) / num_eval)


def _merged(base: dict, stored: dict) -> dict:
    """`stored` over `base`, section by section (a field only `base` has keeps its value)."""
    out = dict(base)
    for key, value in stored.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = _merged(base[key], value)
        else:
            out[key] = value
    return out


def _load_row(row_path: str) -> dict:
    if not isinstance(row_path, str) or not row_path.endswith(".json"):
        raise ValueError("Invalid value for `reproduce`: expected the path of a row's .json "
                         f"file. Received: {row_path!r}")
    if not os.path.isfile(row_path):
        raise FileNotFoundError(f"Invalid value for `reproduce`: no file at {row_path!r}.")
    with open(row_path) as f:
        try:
            row = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"Invalid value for `reproduce`: {row_path!r} is not JSON ({e}).")
    missing = [k for k in ("method", "seed", "target_sparsity", "config", "fingerprint")
               if k not in row]
    if missing:
        raise ValueError(
            f"Invalid value for `reproduce`: {row_path!r} is not a training row of the "
            f"benchmark (it has no {missing}; worst-case rows are rebuilt by `--worst_case`).")
    if row["method"] not in runner.METHODS:
        raise ValueError(f"Invalid value for `reproduce`: {row_path!r} has method "
                         f"{row['method']!r}, not one of {tuple(runner.METHODS)}.")
    return row


def row_config(row: dict) -> ml_collections.ConfigDict:
    """The config that makes exactly `row`: its stored config, narrowed to its
    method, sparsity, seed and split."""
    config = ml_collections.ConfigDict(_merged(benchmark_config().to_dict(), row["config"]))
    sparsity = float(row["target_sparsity"]) or 0.9  # reference rows: any sparsity
    config.methods = (row["method"],)
    config.sparsities = (sparsity,)
    config.seeds = (int(row["seed"]),)
    config.split = row.get("split", config.split)
    return config


def compare(committed: dict, new: dict) -> list:
    """`[(figure, committed, new, |difference|, tolerance, within it)]`."""
    out = []
    for key in FIGURES:
        if committed.get(key) is None or new.get(key) is None:
            continue
        old, now = float(committed[key]), float(new[key])
        tol = tolerance(key, old, int(committed.get("num_eval", 0)))
        diff = abs(now - old)
        out.append((key, old, now, diff, tol, diff <= tol + 1e-12))
    return out


def reproduce(row_path: str, workdir: str | None = None, results_dir: str | None = None,
              log=print) -> dict:
    """Reruns the row at `row_path`; returns `{"row", "new", "comparison", "ok"}`.

    `workdir` (cached dense models and final models) and `results_dir` (the new
    row) default to a fresh temporary directory, so nothing is reused and the
    committed row is never touched.
    """
    row = _load_row(row_path)
    config = row_config(row)
    fingerprint = runner.fingerprint(config, row["method"])
    if fingerprint != row["fingerprint"]:
        raise ValueError(
            f"Invalid benchmark state: {row_path!r} records fingerprint {row['fingerprint']}, "
            f"but its stored config hashes to {fingerprint} with this code: a setting the row "
            "depends on is no longer read the same way, so this code cannot promise to "
            "rebuild it (see benchmarks/reruns/README.md for moved rows).")
    scratch = tempfile.mkdtemp(prefix="deadwood_reproduce_")
    workdir = workdir or os.path.join(scratch, "work")
    results_dir = results_dir or os.path.join(scratch, "results")
    log(f"== reproduce {row_path}: {row['method']} @ {row['target_sparsity']:g}, seed "
        f"{row['seed']}, {config.split} split (fingerprint {fingerprint}); work in {scratch}")
    written = runner.run(config, results_dir, workdir, row.get("variant", ""))
    if len(written) != 1:
        raise RuntimeError(f"reproduce: expected one new row, got {written}")
    with open(written[0]) as f:
        new = json.load(f)
    comparison = compare(row, new)
    log(f"{'figure':10} {'committed':>10} {'new':>10} {'|diff|':>8} {'tolerance':>10}")
    for key, old, now, diff, tol, ok in comparison:
        scale = 1 if key == "sparsity" else 100
        log(f"{key:10} {scale * old:10.4g} {scale * now:10.4g} {scale * diff:8.3g} "
            f"{scale * tol:10.3g}  {'ok' if ok else 'OUTSIDE'}")
    ok = all(c[-1] for c in comparison)
    log(f"== {'within' if ok else 'OUTSIDE'} the documented tolerance; new row: {written[0]}")
    return {"row": row, "new": new, "comparison": comparison, "ok": ok, "path": written[0]}
