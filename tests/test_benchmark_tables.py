"""Fast checks of the benchmark's pieces: intervals, attack and callback factories,
the plain-AT switch and the gradual default of DeadwoodCallback."""

import json
import os

import keras
import ml_collections
import numpy as np
import pytest

import deadwood_tf as dw
from deadwood_tf import attacks, callbacks, pipeline, pruning_schedule
from deadwood_tf.adversarial import AdversarialTraining
from deadwood_tf.benchmarks import runner, tables
from deadwood_tf.benchmarks.config import benchmark_config
from deadwood_tf.config import default_config

from conftest import ROOT


def test_interval_and_wording():
    mean, half = tables.interval([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0) and half == pytest.approx(4.3027 / np.sqrt(3), rel=1e-3)
    p = tables.p_value([1.0, 2.0, 3.0])
    assert p == pytest.approx(0.0742, abs=1e-3)        # t = 3.46 on 2 degrees of freedom
    assert tables.verdict(mean, p) == "tie"
    assert tables.verdict(1.0, tables.p_value([1.0, 1.1, 0.9])) == "better"
    assert tables.verdict(-1.0, tables.p_value([-1.0, -1.1, -0.9])) == "worse"
    assert tables.verdict(2.0, tables.p_value([2.0])) == "n/a (1 seed)"
    assert tables.p_value([0.5, 0.5]) == 0.0 and tables.p_value([0.0, 0.0]) == 1.0


def test_holm_adjusts_step_down_and_keeps_the_order():
    # Sorted 0.01, 0.02, 0.04 (m = 3): 0.03, max(0.03, 0.04), max(0.04, 0.04).
    adjusted = tables.holm([0.04, 0.01, None, 0.02])
    assert adjusted[1] == pytest.approx(0.03) and adjusted[3] == pytest.approx(0.04)
    assert adjusted[0] == pytest.approx(0.04) and adjusted[2] is None
    # A 0.02 that passes alone fails among five comparisons.
    assert tables.holm([0.02, 0.5, 0.5, 0.5, 0.5])[0] == pytest.approx(0.1)
    assert tables.holm([0.9, 0.8]) == [1.0, 1.0]                  # capped at 1, monotone


def test_the_committed_docs_agree_with_the_committed_rows(monkeypatch):
    """`tools/benchmark_tables.py --check` on the repository's own rows and docs."""
    import os

    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    results = os.path.join("benchmarks", "results")
    protocols = sorted(d for d in os.listdir(results) if os.path.isdir(os.path.join(results, d)))
    assert tables.check_docs(tables.DOCS, results, protocols) == []
    readme = open("README.md").read()  # the headline table is there, and generated
    assert "<!-- benchmark-headline:mnist_cnn begin -->\n_Generated" in readme


def _row(method, sparsity, seed, clean, pgd, group="peer"):
    return {"method": method, "target_sparsity": sparsity, "seed": seed, "clean": clean,
            "pgd": pgd, "group": group, "sparsity": sparsity, "train_seconds": 1.0}


def test_headline_table_agrees_with_the_paired_table(tmp_path):
    import json

    folder = tmp_path / "toy"
    folder.mkdir()
    rows = [_row("deadwood", 0.9, s, 0.97, 0.88 + 0.01 * s, "deadwood") for s in range(3)]
    rows += [_row("gradual_magnitude_at", 0.9, s, 0.96, 0.85 + 0.01 * s) for s in range(3)]
    rows += [_row("hydra_global", 0.9, s, 0.95, 0.80) for s in range(3)]
    rows += [_row("tfmot_at", 0.9, s, 0.90, 0.60) for s in range(3)]
    for i, r in enumerate(rows):
        (folder / f"{i}.json").write_text(json.dumps(r))
    text = tables.render_headline(str(tmp_path), "toy")
    line = next(x for x in text.splitlines() if x.startswith("| 0.9 |"))
    # Deadwood 97.00 / 89.00, the control 96.00 / 86.00, the best other peer by PGD-20.
    assert "| 3 | 97.00 / 89.00 | 96.00 / 86.00 | hydra_global: 95.00 / 80.00 |" in line
    # Every difference is exactly +3 PGD-20 / +1 clean: no spread, so p 0 -> "better",
    # the same words as the paired table of the full render.
    assert "+3.00 [+3.00, +3.00], better (p 0.000)" in line
    full = tables.render(str(tmp_path), "toy")
    assert "| gradual_magnitude_at (peer) | 3 | +1.00 [+1.00, +1.00] | +3.00 [+3.00, +3.00] | " \
        "better (p 0.000) | better (p 0.000) |" in full
    docs = tmp_path / "README.md"
    docs.write_text("a\n<!-- benchmark-headline:toy begin -->\n<!-- benchmark-headline:toy end -->\n")
    other = tmp_path / "bench.md"
    other.write_text("<!-- benchmark-tables:toy begin -->\n<!-- benchmark-tables:toy end -->\n")
    assert tables.check_docs([str(docs), str(other)], str(tmp_path), ["toy"]) == ["toy"]
    tables.update_docs([str(docs), str(other)], str(tmp_path), ["toy"])
    assert tables.check_docs([str(docs), str(other)], str(tmp_path), ["toy"]) == []
    assert line in docs.read_text()
    with pytest.raises(ValueError, match="benchmark-tables:toy begin"):
        tables.check_docs([str(docs)], str(tmp_path), ["toy"])  # the tables have no home


def test_attacks_are_built_from_names_in_one_place():
    pgd = attacks.from_config(default_config().attack)
    assert isinstance(pgd, attacks.PGD) and (pgd.steps, pgd.step_size, pgd.eps) == (5, 0.05, 0.2)
    assert isinstance(attacks.make_attack("fgsm", 0.1), attacks.FGSM)
    apgd = attacks.make_attack("apgd", 0.3, loss="dlr", steps=7)
    assert apgd.name == "apgd_dlr7_linf_0.3"
    assert attacks.make_attack("square", 0.2, max_queries=50).max_queries == 50
    with pytest.raises(ValueError, match="`name`.*'pgdd'"):
        attacks.make_attack("pgdd", 0.1)
    with pytest.raises(ValueError, match="stepz"):
        attacks.make_attack("pgd", 0.1, stepz=3)
    with pytest.raises(ValueError, match="`loss`"):
        attacks.make_attack("apgd", 0.1, loss="hinge")


def _teacher(digits):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(digits[0][:256], digits[1][:256], epochs=2, verbose=0)
    return model


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype("float32")[..., None], d.target.astype("int64")


def test_the_plain_at_switch_is_exactly_adversarial_training(digits):
    """gradual_magnitude_at's switches turn the Lagrangian into mean CE(y, S(x~))."""
    teacher = _teacher(digits)
    x, y = digits[0][:64], digits[1][:64]
    c = benchmark_config()
    c.attack.name = "fgsm"  # deterministic: both sides see the same x~
    model, _, _ = runner.make_deadwood_model(
        c, runner.METHODS["gradual_magnitude_at"].switches, teacher, 64)
    model.compile(keras.optimizers.SGD(0.5))
    model.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    reference = keras.models.clone_model(teacher)
    reference.set_weights(teacher.get_weights())
    at = AdversarialTraining(reference, attacks.FGSM(0.2))
    at.compile(keras.optimizers.SGD(0.5))
    at.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(dw.strip_pruning(model).get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert not np.allclose(reference.get_weights()[0], teacher.get_weights()[0])


def test_deadwood_callback_cuts_gradually_by_default(digits):
    teacher = _teacher(digits)
    x, y = digits[0][:128], digits[1][:128]
    model = dw.DeadwoodModel(dw.prune_model(teacher), teacher, attack=dw.FGSM(0.1))
    model.compile(keras.optimizers.Adam(1e-3))
    history = model.fit(x, y, epochs=4, batch_size=64, verbose=0,
                        callbacks=[dw.DeadwoodCallback(0.9, prune_epoch=3, verbose=0)])
    expected = [0.9 * (1 - (1 - e / 3) ** 3) for e in (1, 2)] + [0.9, 0.9]
    np.testing.assert_allclose(history.history["sparsity"], expected, atol=1e-3)
    with pytest.raises(ValueError, match="`schedule`.*'linear'"):
        dw.DeadwoodCallback(0.9, schedule="linear")


def test_the_callback_factory_reads_the_pipeline_config():
    c = default_config()
    c.prune.schedule = "one_shot"
    c.prune.solve_epochs = 2
    c.deadwood.finetune_sparsity_weight = -1.0
    cb = callbacks.from_config(c, target_sparsity=0.8, verbose=0)
    assert (cb.target_sparsity, cb.prune_epoch) == (0.8, 2)
    assert isinstance(cb.schedule, pruning_schedule.OneShot) and cb.schedule.epochs == 2
    assert cb.finetune_sparsity_weight is None and cb.verbose == 0
    assert isinstance(callbacks.from_config(default_config()).schedule, pruning_schedule.Cubic)
    bad = ml_collections.ConfigDict(c.to_dict())
    bad.prune.schedule = "sudden"
    with pytest.raises(ValueError, match="`schedule`"):
        callbacks.from_config(bad)


def test_every_switch_trains_for_the_same_budget(digits, monkeypatch):
    """A switch that moves the cut (one-shot control: solve_epochs 0) keeps the 6 epochs."""
    from deadwood_tf import data as data_lib

    teacher = _teacher(digits)
    ds = data_lib.Dataset("digits", digits[0][:128], digits[1][:128], digits[0][:32],
                          digits[1][:32], 10)
    epochs = {}

    def record(self, *args, **kwargs):
        epochs[name] = kwargs["epochs"]

    monkeypatch.setattr(dw.DeadwoodModel, "fit", record)
    c = benchmark_config()
    for name in ("deadwood", "global_magnitude_at", "deadwood_one_shot", "gradual_magnitude_at"):
        runner._deadwood(c, runner.METHODS[name].switches, teacher, ds, 0.5, 0)
    assert set(epochs.values()) == {6}, epochs


def test_the_pipeline_and_the_benchmark_build_their_attacks_from_the_config():
    c = default_config()
    c.attack.norm, c.attack.clip_min, c.attack.clip_max = "l2", -1.0, 2.0
    c.eval.eps, c.eval.pgd_steps, c.eval.pgd_step_size, c.eval.per_epoch_pgd_steps = \
        0.5, 7, 0.1, 4
    fgsm, pgd = attacks.eval_attacks_from_config(c)
    assert isinstance(fgsm, attacks.FGSM) and isinstance(pgd, attacks.PGD)
    for a in (fgsm, pgd, pipeline.per_epoch_attack(c)):
        assert (a.eps, a.norm_name, a.clip_min, a.clip_max) == (0.5, "l2", -1.0, 2.0)
    assert (pgd.steps, pgd.step_size, pgd.random_start) == (7, 0.1, True)
    per_epoch = pipeline.per_epoch_attack(c)
    assert (per_epoch.steps, per_epoch.step_size) == (4, pytest.approx(2.5 * 0.5 / 4))
    c.eval.fgsm = False
    assert [a.name for a in attacks.eval_attacks_from_config(c)] == ["pgd7_l2_0.5"]
    # The benchmark reads the same sections through the same factory.
    b = benchmark_config()
    assert [a.get_config() for a in attacks.eval_attacks_from_config(b)] == \
        [a.get_config() for a in attacks.eval_attacks_from_config(default_config())]


@pytest.mark.parametrize("field, value, message", [
    ("attack.name", "square", r"`attack.name`: expected one of \('fgsm', 'pgd'\)"),
    ("prune.schedule", "sudden", "`prune.schedule`"),
    ("deadwood.batch_norm", "both", r"`deadwood.batch_norm`.*Received: 'both'"),
    ("deadwood.max_multiplier", 0.0, "`max_multiplier`"),  # read by the callback factory
    ("eval.per_epoch_pgd_steps", 0, "`steps`"),
])
def test_the_pipeline_refuses_bad_attack_and_callback_fields_before_training(
        field, value, message):
    from deadwood_tf import train

    c = default_config()
    section, name = field.split(".")
    c[section][name] = value
    with pytest.raises(ValueError, match=message):
        train.validate(c)


def test_batch_norm_reaches_the_deadwood_model_of_the_pipeline_and_the_benchmark():
    import inspect

    default = inspect.signature(dw.DeadwoodModel.__init__).parameters["batch_norm"].default
    assert default_config().deadwood.batch_norm == default == "separate"
    teacher = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                keras.layers.Dense(10)])
    product, bench = default_config(), benchmark_config()
    assert pipeline.make_deadwood_model(product, teacher, 16).batch_norm == "separate"
    assert runner.make_deadwood_model(bench, (), teacher, 16)[0].batch_norm == "separate"
    product.deadwood.batch_norm = bench.deadwood.batch_norm = "joint"
    assert pipeline.make_deadwood_model(product, teacher, 16).batch_norm == "joint"
    assert runner.make_deadwood_model(bench, (), teacher, 16)[0].batch_norm == "joint"


def test_channel_rows_get_a_paired_table_only_with_two_shared_seeds():
    def row(method, seed, clean, pgd):
        return {"method": method, "target_sparsity": 0.5, "seed": seed, "group": "structured",
                "clean": clean, "pgd": pgd, "macs": 50, "dense_macs": 100, "params": 10}

    rows = [row("deadwood_channel", 0, 0.97, 0.90), row("deadwood_channel", 1, 0.98, 0.91),
            row("l1_filter_at", 0, 0.97, 0.88), row("l1_filter_at", 1, 0.97, 0.885),
            row("gradual_channel_at", 0, 0.96, 0.80)]
    text = "\n".join(tables._structured(rows, tables._groups(rows)))
    assert "Paired differences, deadwood_channel minus" in text
    line = next(l for l in text.splitlines() if l.startswith("| l1_filter_at (structured)"))
    # Deadwood minus L1 per seed: clean 0, +1; PGD-20 +2, +2.5 points.
    assert line.startswith("| l1_filter_at (structured) | 2 | +0.50 [") and "| +2.25 [" in line
    assert "gradual_channel_at (structured)" not in text  # one shared seed: no interval
    one_seed = [r for r in rows if r["seed"] == 0]
    assert "Paired" not in "\n".join(tables._structured(one_seed, tables._groups(one_seed)))


def test_the_search_block_lists_candidates_and_marks_the_rules_leader(tmp_path):
    from deadwood_tf.benchmarks import tables

    folder = tmp_path / "p" / "validation"
    (folder / "worst").mkdir(parents=True)
    search_file = os.path.join(ROOT, "benchmarks", "search", "mnist_fair_r1.py")
    # (sparsity reached, clean, PGD-20, worst or None): c1 is within the tie of c0's
    # worst case with the higher clean; c2 misses the sparsity; c3 has no worst case yet.
    cands = {0: (0.95, 0.97, 0.85, 0.800), 1: (0.95, 0.98, 0.84, 0.799),
             2: (0.94, 0.99, 0.90, 0.900), 3: (0.95, 0.99, 0.90, None)}
    for i, (reached, clean, pgd, worst) in cands.items():
        name = f"deadwood-s-c{i}_0.95_seed0.json"
        row = {"method": "deadwood", "target_sparsity": 0.95, "sparsity": reached,
               "clean": clean, "pgd": pgd, "seed": 0,
               "search": {"name": "s", "candidate": i, "commit": "abcdef0123",
                          "file": search_file, "overrides": {"deadwood.learning_rate": 1e-3}}}
        (folder / name).write_text(json.dumps(row))
        if worst is not None:
            (folder / "worst" / name).write_text(json.dumps({"accuracy": {"worst": worst}}))
    lines = tables.render_search(str(tmp_path), "p").splitlines()
    rows = {line.split("|")[4].strip(): line for line in lines if line.startswith("| s |")}
    assert sorted(rows) == ["c0", "c1", "c2", "c3"]
    assert [c for c, line in rows.items() if "**yes**" in line] == ["c1"]
    assert "pending" in rows["c3"] and "learning_rate=0.001" in rows["c0"]
    assert tables.render_search(str(tmp_path), "other") == ""
