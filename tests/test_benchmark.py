"""The benchmark binary's library on a seconds-long profile (digits)."""

import csv
import json
import os

import pytest

from deadwood_tf import benchmark
from deadwood_tf.config import benchmark_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "benchmark_tiny", os.path.join(ROOT, "configs", "benchmark_tiny.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("bench"))
    return workdir, benchmark.run_benchmark(tiny(), workdir)


def test_every_method_runs_and_reaches_its_target_sparsity(results):
    workdir, res = results
    rows = res["rows"]
    assert {(r["method"], r["target_sparsity"]) for r in rows} == (
        {("dense", 0.0), ("dense_at", 0.0)}
        | {(m, s) for m in benchmark.PRUNING_METHODS for s in (0.5, 0.9)})
    for r in rows:
        assert r["sparsity"] == pytest.approx(r["target_sparsity"], abs=2e-3), r
        assert 0.0 <= r["pgd"] <= r["clean"] + 1e-9 <= 1.0 + 1e-9
        assert r["square"] is not None and r["train_seconds"] > 0
        assert r["tflite_bytes"] > 0
        if r["target_sparsity"] >= 0.9:
            assert r["tflite_bytes"] < r["tflite_dense_bytes"]
    for name in ("results.json", "results.csv", "results.md", "robust_accuracy_vs_sparsity.png",
                 "dense.keras", "dense_at.keras", "rows.jsonl"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0, name
    assert len(list(csv.DictReader(open(os.path.join(workdir, "results.csv"))))) == len(rows)
    saved = json.load(open(os.path.join(workdir, "results.json")))
    assert {"tensorflow", "keras"} <= set(saved["versions"]) and saved["machine"]["cpu_count"]
    table = open(os.path.join(workdir, "results.md")).read()
    assert table.count("| deadwood |") == 2 and "| tfmot_at |" in table


def test_a_rerun_reuses_finished_rows_and_models(results, monkeypatch):
    workdir, res = results

    def fail(*args, **kwargs):
        raise AssertionError("retrained a finished method")

    monkeypatch.setattr(benchmark, "_prune", fail)
    monkeypatch.setattr(benchmark.models_lib, "build_model", fail)
    again = benchmark.run_benchmark(tiny(), workdir)
    assert [r["pgd"] for r in again["rows"]] == [r["pgd"] for r in res["rows"]]


def test_bad_benchmark_configs_are_refused(tmp_path):
    c = tiny()
    c.methods = ("deadwood", "magic")
    with pytest.raises(ValueError, match=r"`methods`.*magic"):
        benchmark.run_benchmark(c, str(tmp_path))
    c = benchmark_config()
    c.data.path = str(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        benchmark.run_benchmark(c, str(tmp_path))


def test_methods_accept_a_comma_separated_override():
    c = tiny()
    c.methods = ("deadwood,hydra",)
    assert benchmark._methods(c) == ["deadwood", "hydra"]
    c.methods = ()
    assert benchmark._methods(c) == list(benchmark.METHODS)
