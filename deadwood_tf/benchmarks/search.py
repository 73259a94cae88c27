"""A search fixed before it runs: every contender's candidates, the rule that
picks each winner, and the test rows of the winners.

A search file (`benchmarks/search/*.py`) defines `get_search()` returning a
dict: `name`, `base_config` (a configs/benchmark_*.py file), `protocol` (the
rows' folder), `seed`, `sparsities` (selection), `take` (sparsity -> the
selection sparsity whose choice it takes), `test_sparsities`, `test_seeds`,
`max_sparsity_miss`, `tie`, `selection` (the validation worst case's
settings), `ceiling` and `contenders` (method -> list of candidates, each a
dict "dotted.config.field" -> value). Three stages:

- `validation`: every candidate of every contender, seed `seed`, on the
  validation split, then its validation worst case.
- `choose`: the rule (see `choose`) applied to those rows; writes
  `<results>/<protocol>/search_<name>.json`.
- `test`: each winner on the test split for `test_seeds` x `test_sparsities`,
  and the dense ceiling.

The file must be committed, unmodified, before any of its rows: every row
records the commit (`provenance.commit_of`), so a reader can check that the rule
came first.
"""

from __future__ import annotations

import importlib.util
import json
import os

import keras

from deadwood_tf.atomic import write_json
from deadwood_tf.benchmarks import runner
from deadwood_tf.provenance import commit_of

STAGES = ("validation", "choose", "test")
_REQUIRED = ("name", "base_config", "protocol", "seed", "sparsities", "take",
             "test_sparsities", "test_seeds", "max_sparsity_miss", "tie", "selection",
             "contenders")


def _load_module(path, what):
    if not isinstance(path, str) or not path.endswith(".py") or not os.path.isfile(path):
        raise ValueError(f"Invalid value for `{what}`: expected the path of an existing .py "
                         f"file. Received: {path!r}")
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(path: str) -> dict:
    """The search of the file at `path`, checked."""
    search = _load_module(path, "search").get_search()
    missing = [k for k in _REQUIRED if k not in search]
    if missing:
        raise ValueError(f"Invalid search file {path!r}: `get_search()` lacks {missing}.")
    counts = {m: len(c) for m, c in search["contenders"].items()}
    unknown = [m for m in counts if m not in runner.METHODS]
    if unknown:
        raise ValueError(f"Invalid search file {path!r}: unknown contenders {unknown}; "
                         f"expected names from {tuple(runner.METHODS)}.")
    if len(set(counts.values())) != 1:
        raise ValueError(f"Invalid search file {path!r}: every contender must get the same "
                         f"number of candidates. Received: {counts}")
    for sparsity, source in search["take"].items():
        if source not in search["sparsities"]:
            raise ValueError(f"Invalid search file {path!r}: `take` maps {sparsity} to "
                             f"{source}, which is not a selection sparsity "
                             f"{tuple(search['sparsities'])}.")
    return {**search, "path": path}


def candidate_config(search: dict, method: str, overrides: dict, split: str, seeds,
                     sparsities):
    """The base config with one candidate's `overrides`, narrowed to `method`."""
    undotted = [k for k in overrides if "." not in k]
    if undotted:
        raise ValueError(f"Invalid candidate settings {undotted}: expected dotted config "
                         "fields such as 'deadwood.learning_rate'.")
    config, _ = runner.with_switches(
        _load_module(search["base_config"], "base_config").get_config(), overrides.items())
    config.protocol = search["protocol"]
    config.methods = (method,)
    config.split = split
    config.seeds = tuple(int(s) for s in seeds)
    config.sparsities = tuple(float(s) for s in sparsities)
    return config


def variant(search: dict, index: int) -> str:
    return f"{search['name']}-c{index}"


def _provenance(search: dict, commit: str, **extra) -> dict:
    return {"search": {"file": search["path"], "name": search["name"], "commit": commit,
                       **extra}}


def run_validation(search, results_dir, workdir, methods=None, worst_case_fn=None) -> list:
    """Every candidate of `methods` (default: every contender): its validation rows,
    then its validation worst case (`worst_case_fn(config, model, x, y, selection)`,
    default the fast evaluator). Resumable: finished rows and worst cases are skipped."""
    commit = commit_of(search["path"], "search file")
    written = []
    for method in methods or list(search["contenders"]):
        for i, overrides in enumerate(search["contenders"][method]):
            config = candidate_config(search, method, overrides, "validation",
                                      (search["seed"],), search["sparsities"])
            print(f"== search {search['name']}: {method} candidate {i} {overrides}", flush=True)
            written += runner.run(config, results_dir, workdir, variant(search, i),
                                  provenance=_provenance(search, commit, candidate=i,
                                                    overrides=overrides))
            for sparsity in search["sparsities"]:
                written += _validation_worst(search, config, method, i, sparsity, results_dir,
                                             workdir, worst_case_fn)
    return written


def _worst_path(search, results_dir, method, index, sparsity):
    name = runner.row_name(method, sparsity, search["seed"], variant(search, index))
    return os.path.join(results_dir, search["protocol"], "validation", "worst", name + ".json")


def _validation_worst(search, config, method, index, sparsity, results_dir, workdir, fn):
    path = _worst_path(search, results_dir, method, index, sparsity)
    if os.path.exists(path):
        return []
    name = runner.row_name(method, sparsity, search["seed"], variant(search, index))
    model_path = os.path.join(workdir, search["protocol"], "models", f"validation_{name}.keras")
    if fn is None:
        from deadwood_tf.benchmarks import worst_case

        fn = worst_case.selection_figure
    if not os.path.exists(model_path):
        row = os.path.join(runner.rows_dir(config, results_dir), name + ".json")
        raise ValueError(
            f"Invalid search state: {row} exists but its model {model_path} does not (another "
            "machine or workdir made it), so its validation worst case cannot be measured. "
            "Delete the row file to retrain the candidate, or pass the --workdir that holds it.")
    _, (x, y) = runner.load_data(config)
    n = int(search["selection"]["examples"])
    result = fn(config, keras.models.load_model(model_path), x[:n], y[:n], search["selection"])
    write_json(path, {"method": method, "candidate": index, "target_sparsity": sparsity,
                      "seed": search["seed"], "split": "validation", **result})
    return [path]


def pick(entries, tie):
    """The rule's winner among `entries` (dicts with `candidate`, `valid`, `worst`,
    `clean`): the highest `worst` among the valid ones; within `tie` of it, the
    higher `clean`; then the earlier candidate. None when none is valid.

    >>> pick([{"candidate": 0, "valid": True, "worst": 0.80, "clean": 0.97},
    ...       {"candidate": 1, "valid": True, "worst": 0.801, "clean": 0.98},
    ...       {"candidate": 2, "valid": False, "worst": 0.9, "clean": 0.99}], tie=0.002)
    1
    """
    valid = [e for e in entries if e["valid"]]
    if not valid:
        return None
    best = max(e["worst"] for e in valid)
    near = [e for e in valid if e["worst"] >= best - tie]
    return max(near, key=lambda e: (e["clean"], -e["candidate"]))["candidate"]


def choose(search: dict, results_dir: str) -> dict:
    """Each contender's winner per selection sparsity, by the search's rule:
    out if the sparsity misses the target by more than `max_sparsity_miss`; the
    highest validation worst case; within `tie` of it, the higher clean; then
    the earlier candidate. Writes and returns the choice file's content."""
    rows_dir = os.path.join(results_dir, search["protocol"], "validation")
    table, choice = {}, {}
    for method, candidates in search["contenders"].items():
        for sparsity in search["sparsities"]:
            scored = []
            for i in range(len(candidates)):
                name = runner.row_name(method, sparsity, search["seed"], variant(search, i))
                row_path = os.path.join(rows_dir, name + ".json")
                worst_path = _worst_path(search, results_dir, method, i, sparsity)
                if not (os.path.exists(row_path) and os.path.exists(worst_path)):
                    raise ValueError(f"Invalid search state: {name} has no "
                                     f"{'row' if not os.path.exists(row_path) else 'worst case'}"
                                     " yet; run --stage=validation first.")
                row, worst = json.load(open(row_path)), json.load(open(worst_path))
                entry = {"candidate": i, "clean": row["clean"], "pgd": row["pgd"],
                         "sparsity": row["sparsity"], "worst": worst["accuracy"]["worst"],
                         "valid": abs(row["sparsity"] - sparsity) <= search["max_sparsity_miss"]}
                scored.append(entry)
            table[f"{method}@{sparsity:g}"] = scored
            choice[f"{method}@{sparsity:g}"] = pick(scored, search["tie"])
    out = {"search": search["name"], "file": search["path"],
           "commit": commit_of(search["path"], "search file"),
           "choice": choice, "candidates": table}
    write_json(os.path.join(results_dir, search["protocol"], f"search_{search['name']}.json"),
               out)
    return out


def _winner(search, chosen, method, sparsity):
    source = search["take"].get(sparsity, sparsity)
    index = chosen["choice"].get(f"{method}@{source:g}")
    if index is None:
        raise ValueError(f"Invalid search state: no valid candidate of {method} at "
                         f"{source:g}; its test rows cannot run.")
    return index, search["contenders"][method][index]


def run_test(search, results_dir, workdir, methods=None, seeds=None) -> list:
    """The winners' test rows (and the dense ceiling's), each recording the search."""
    commit = commit_of(search["path"], "search file")
    choice_path = os.path.join(results_dir, search["protocol"], f"search_{search['name']}.json")
    if not os.path.exists(choice_path):
        raise ValueError(f"Invalid search state: no {choice_path}; run --stage=choose first.")
    chosen = json.load(open(choice_path))
    seeds = seeds or search["test_seeds"]
    written = []
    for method in methods or list(search["contenders"]):
        for sparsity in search["test_sparsities"]:
            index, overrides = _winner(search, chosen, method, sparsity)
            config = candidate_config(search, method, overrides, "test", seeds, (sparsity,))
            written += runner.run(config, results_dir, workdir, provenance=_provenance(
                search, commit, candidate=index, overrides=overrides))
    ceiling = search.get("ceiling")
    if ceiling and (methods is None or ceiling["method"] in methods):
        index, overrides = _winner(search, chosen, *ceiling["takes"])
        lr = {k: v for k, v in overrides.items() if k.endswith("learning_rate")}
        config = candidate_config(search, ceiling["method"], lr, "test", seeds, (0.9,))
        written += runner.run(config, results_dir, workdir, provenance=_provenance(
            search, commit, candidate=index, overrides=lr, takes=list(ceiling["takes"])))
    return written
