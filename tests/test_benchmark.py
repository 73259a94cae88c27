"""The benchmark's rows, resume, worst case and tables on a seconds-long profile (digits)."""

import json
import os
import shutil

import numpy as np
import pytest

from deadwood_tf.benchmarks import runner, tables, worst_case

from conftest import ROOT, tiny_benchmark_config

METHODS = ("dense_at", "deadwood", "gradual_magnitude_at")


def tiny():
    c = tiny_benchmark_config()
    c.methods = (",".join(METHODS),)
    return c


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    results, work = str(root / "results"), str(root / "work")
    return results, work, runner.run(tiny(), results, work)


def test_every_row_is_its_own_file_with_what_a_reader_needs(bench):
    results, _, written = bench
    names = sorted(os.path.basename(p) for p in written)
    assert names == sorted(f"{m}_{0.0 if m == 'dense_at' else 0.8:g}_seed{s}.json"
                           for m in METHODS for s in (0, 1))
    for path in written:
        row = json.load(open(path))
        assert row["split"] == "test" and row["num_eval"] == 100 and row["num_train"] == 1238
        assert {"tensorflow", "keras"} <= set(row["versions"]) and row["machine"]["cpu_count"]
        assert row["config"]["data"]["validation"] == 200 and row["date"]
        assert 0.0 <= row["pgd"] <= row["clean"] <= 1.0
        expected = 0.0 if row["method"] == "dense_at" else 0.8
        assert row["sparsity"] == pytest.approx(expected, abs=2e-3), row["method"]
    # The seeds change the models: the two dense-AT rows differ.
    a, b = (json.load(open(os.path.join(results, "digits_tiny", f"dense_at_0_seed{s}.json")))
            for s in (0, 1))
    assert (a["clean"], a["pgd"]) != (b["clean"], b["pgd"]) or a["fgsm"] != b["fgsm"]


def test_a_rerun_skips_finished_rows_and_refuses_other_settings(bench, monkeypatch):
    results, work, _ = bench

    def fail(*args, **kwargs):
        raise AssertionError("retrained a finished row")

    monkeypatch.setattr(runner, "_deadwood", fail)
    monkeypatch.setattr(runner, "_dense_models", fail)
    assert runner.run(tiny(), results, work) == []
    changed = tiny()
    changed.deadwood.sparsity_weight = 1.0
    with pytest.raises(ValueError, match="other settings"):
        runner.run(changed, results, work)
    # A change of Deadwood's defaults leaves the rows of the plain-AT control and
    # of the dense models valid: their switches fix every Lagrangian setting.
    changed.methods = ("dense_at,gradual_magnitude_at",)
    assert runner.run(changed, results, work) == []


def test_fingerprints_follow_what_each_method_reads():
    c = tiny()
    before = {m: runner.fingerprint(c, m) for m in runner.METHODS}
    c.deadwood.robust_target = "teacher"
    after = {m: runner.fingerprint(c, m) for m in runner.METHODS}
    changed = sorted(m for m in before if before[m] != after[m])
    assert changed == sorted(m for m, v in runner.METHODS.items() if v.kind == "deadwood"
                             and ("deadwood.robust_target", "label") not in v.switches)
    c.deadwood.learning_rate = 3e-4  # every pruning method trains with it but published HYDRA,
    lr = {m: runner.fingerprint(c, m) for m in runner.METHODS}  # and so does the dense ceiling
    assert {m for m in lr if lr[m] != after[m]} == \
        set(runner.PRUNING_METHODS) - {"hydra"} | {"dense_at_long"}



def test_the_default_batch_norm_leaves_the_rows_made_before_it_valid():
    """Rows made before `deadwood.batch_norm` existed store configs without it."""
    import glob

    import ml_collections

    c = tiny()
    before = {m: runner.fingerprint(c, m) for m in runner.METHODS}
    older = c.to_dict()
    del older["deadwood"]["batch_norm"]
    older = ml_collections.ConfigDict(older)
    assert {m: runner.fingerprint(older, m) for m in runner.METHODS} == before
    c.deadwood.batch_norm = "joint"
    after = {m: runner.fingerprint(c, m) for m in runner.METHODS}
    assert {m for m in before if before[m] != after[m]} == \
        {m for m, v in runner.METHODS.items() if v.kind == "deadwood"}
    # The committed rows: still valid under the settings they store, the field added.
    for path in glob.glob(os.path.join(ROOT, "benchmarks", "results", "*", "*.json")):
        row = json.load(open(path))
        stored = ml_collections.ConfigDict(row["config"])
        assert runner.fingerprint(stored, row["method"]) == row["fingerprint"], path
        stored.deadwood.batch_norm = stored.deadwood.get("batch_norm", "separate")
        assert runner.fingerprint(stored, row["method"]) == row["fingerprint"], path


def test_the_validation_split_is_stratified_and_held_out():
    c = tiny()
    ds, (x_eval, y_eval) = runner.load_data(c)
    assert len(x_eval) == 100  # the test split
    c.split = "validation"
    ds_val, (x_val, y_val) = runner.load_data(c)
    assert len(x_val) == 200 and ds_val.num_train == 1238
    train_counts = np.bincount(ds_val.y_train, minlength=10) / ds_val.num_train
    assert np.abs(np.bincount(y_val, minlength=10) / 200 - train_counts).max() < 0.02
    seen = {x.tobytes() for x in ds_val.x_train}
    assert sum(x.tobytes() in seen for x in x_val) <= 2  # digits holds a few duplicate images


def test_masking_flag_is_square_more_than_a_point_below_pgd_with_restarts():
    # The two worst-case rows of the benchmark: Square 1.6 and 0.8 points below PGD.
    assert worst_case.masking({"square": 0.861, "pgd_restarts": 0.877, "gradient_worst": 0.871})
    assert not worst_case.masking({"square": 0.847, "pgd_restarts": 0.855,
                                   "gradient_worst": 0.847})


def test_worst_case_and_tables_come_from_the_rows(bench, tmp_path):
    results, work, _ = bench
    c = tiny()
    written = worst_case.run(c, ["deadwood"], results, work, seeds=[1])
    assert [os.path.relpath(p, results) for p in written] == [
        os.path.join("digits_tiny", "worst_aa", "deadwood_0.8_seed1.json")]
    row = json.load(open(written[0]))
    acc, attacked = row["accuracy"], row["attacked"]
    assert row["evaluator"] == worst_case.EVALUATOR and row["seed"] == 1
    assert row["num_examples"] == 20 and isinstance(row["masking"], bool)
    # A cascade: each attack ran on the digits every earlier one left robust.
    order = ["clean", "pgd5_restart0", "pgd5_restart1", "apgd_ce", "apgd_t", "square"]
    assert row["attacks"] == order[1:] and set(row["attack_seconds"]) == set(attacked) == set(
        order[1:])
    for before, name in zip(order, order[1:]):
        assert attacked[name] == round(20 * acc[before]) and acc[name] <= acc[before]
    assert acc["worst"] == acc["square"] and acc["gradient_worst"] == acc["apgd_t"]
    assert worst_case.run(c, ["deadwood"], results, work, seeds=[1]) == []  # finished
    # Selection: the validation split, gradient attacks only (the test model stands in).
    models = os.path.join(work, "digits_tiny", "models")
    shutil.copy(os.path.join(models, "test_deadwood_0.8_seed1.keras"),
                os.path.join(models, "validation_deadwood_0.8_seed1.keras"))
    c.split, c.worst.square, c.worst.pgd_restarts = "validation", False, 0
    [path] = worst_case.run(c, ["deadwood"], results, work, seeds=[1])
    assert os.path.relpath(path, results) == os.path.join(
        "digits_tiny", "validation", "worst_aa", "deadwood_0.8_seed1.json")
    row = json.load(open(path))
    assert row["attacks"] == ["apgd_ce", "apgd_t"] and row["masking"] is None
    assert row["split"] == "validation" and row["attacked"]["apgd_ce"] == round(
        20 * row["accuracy"]["clean"])
    # The tables read the earlier evaluator's rows, in worst/.
    legacy = {"method": "deadwood", "target_sparsity": 0.8, "seed": 0, "num_examples": 20,
              "square_only": 0, "masking": False,
              "accuracy": {"clean": 0.9, "pgd5_restart0": 0.6, "pgd_restarts": 0.6,
                           "apgd_ce": 0.6, "apgd_dlr": 0.6, "square": 0.6, "worst": 0.55}}
    runner.write_json(os.path.join(results, "digits_tiny", "worst", "deadwood_0.8_seed0.json"),
                       legacy)
    docs = tmp_path / "bench.md"
    docs.write_text("intro\n<!-- benchmark-tables:digits_tiny begin -->\nold\n"
                    "<!-- benchmark-tables:digits_tiny end -->\nend\n")
    assert tables.check_docs(str(docs), results, ["digits_tiny"]) == ["digits_tiny"]
    tables.update_docs(str(docs), results, ["digits_tiny"])
    text = docs.read_text()
    assert tables.check_docs(str(docs), results, ["digits_tiny"]) == []
    assert "| deadwood | 0,1 |" in text and "gradual_magnitude_at (peer) | 2 |" in text
    assert "Worst case per example" in text and text.startswith("intro") and "end\n" in text
    clean = [json.load(open(os.path.join(results, "digits_tiny", f"deadwood_0.8_seed{s}.json")))
             ["clean"] for s in (0, 1)]
    assert f"| deadwood | 0,1 | {100 * np.mean(clean):.2f} ± {100 * np.std(clean, ddof=1):.2f} |" \
        in text
    docs.write_text(text.replace("| deadwood | 0,1 |", "| deadwood | 0,1,2 |"))
    assert tables.check_docs(str(docs), results, ["digits_tiny"]) == ["digits_tiny"]
