"""`--reproduce`: one committed row rebuilt from its own stored config and seed."""

import glob
import json
import os

import pytest

from deadwood_tf.benchmarks import reproduce, runner
from conftest import ROOT, tiny_benchmark_config as tiny


@pytest.fixture(scope="module")
def row(tmp_path_factory):
    root = tmp_path_factory.mktemp("committed")
    config = tiny()
    config.methods = ("deadwood",)
    config.seeds = (0,)
    (path,) = runner.run(config, str(root / "results"), str(root / "work"))
    return path, str(root / "work")


def test_a_row_is_rebuilt_elsewhere_and_compared_figure_by_figure(row):
    row, work = row
    before = open(row).read()
    lines = []
    out = reproduce.reproduce(row, workdir=work, log=lines.append)  # its cached dense models
    assert open(row).read() == before                     # the committed row is untouched
    assert os.path.dirname(out["path"]) != os.path.dirname(row)
    new = out["new"]
    assert (new["method"], new["seed"], new["target_sparsity"], new["fingerprint"]) == (
        "deadwood", 0, 0.8, out["row"]["fingerprint"])
    figures = [c[0] for c in out["comparison"]]
    assert figures == ["clean", "fgsm", "pgd", "sparsity"]
    for name, old, now, diff, tol, ok in out["comparison"]:
        assert tol == reproduce.tolerance(name, old, 100)                 # 100 test digits
        assert diff == pytest.approx(abs(now - old)) and ok == (diff <= tol + 1e-12)
    assert out["ok"] == all(c[-1] for c in out["comparison"])
    assert any(line.startswith("clean") for line in lines) and "tolerance" in lines[-1]


def test_the_tolerance_is_two_standard_errors_of_the_committed_figure():
    assert reproduce.tolerance("pgd", 0.8585, 2000) == pytest.approx(0.01559, abs=1e-5)
    assert reproduce.tolerance("clean", 0.5, 100) == pytest.approx(0.1)
    assert reproduce.tolerance("sparsity", 0.95, 2000) == 1e-4
    with pytest.raises(ValueError, match="`num_eval`"):
        reproduce.tolerance("pgd", 0.9, 0)
    committed = {"clean": 0.98, "fgsm": 0.92, "pgd": 0.89, "sparsity": 0.95, "num_eval": 2000}
    moved = dict(committed, pgd=0.89 + 0.015, sparsity=0.95 + 2e-4)   # 2 SE of 0.89: 0.0140
    flags = {c[0]: c[-1] for c in reproduce.compare(committed, moved)}
    assert flags == {"clean": True, "fgsm": True, "pgd": False, "sparsity": False}


def test_bad_paths_and_rows_are_refused_with_the_argument_named(tmp_path, row):
    row, _ = row
    with pytest.raises(FileNotFoundError, match="`reproduce`"):
        reproduce.reproduce(str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="expected the path of a row's .json"):
        reproduce.reproduce(str(tmp_path / "row.txt"))
    worst = tmp_path / "worst.json"
    worst.write_text(json.dumps({"method": "deadwood", "accuracy": {}}))
    with pytest.raises(ValueError, match="not a training row"):
        reproduce.reproduce(str(worst))
    changed = json.load(open(row))
    changed["config"]["deadwood"]["sparsity_weight"] = 123.0  # the hash no longer matches
    bad = tmp_path / "changed.json"
    bad.write_text(json.dumps(changed))
    with pytest.raises(ValueError, match="fingerprint"):
        reproduce.reproduce(str(bad))


def test_every_committed_row_rebuilds_its_own_fingerprint():
    """What `--reproduce` needs of every row the tables read (benchmarks/results/): its
    stored config, read by this code, hashes to the fingerprint it was made under.
    (benchmarks/reruns/ keeps superseded rows as evidence; some predate code changes.)"""
    checked = 0
    for path in sorted(glob.glob(os.path.join(ROOT, "benchmarks", "results", "**", "*.json"),
                               recursive=True)):
        row = json.load(open(path))
        if not {"fingerprint", "config", "target_sparsity"} <= set(row) or \
                row.get("method") not in runner.METHODS:
            continue
        config = reproduce.row_config(row)
        assert runner.fingerprint(config, row["method"]) == row["fingerprint"], path
        checked += 1
    assert checked > 300
