"""A search fixed before it runs: load checks, the commit rule, the choice rule, the stages."""

import json
import os
import subprocess

import pytest

from deadwood_tf.benchmarks import runner, search
from conftest import ROOT

SEARCH = '''
def get_search():
    return {{
        "name": "t", "base_config": {base!r}, "protocol": "digits_search", "seed": 0,
        "sparsities": (0.8,), "take": {{}}, "test_sparsities": (0.8,), "test_seeds": (0,),
        "max_sparsity_miss": 0.002, "tie": 0.01, "selection": {{"examples": 50}},
        "ceiling": {{"method": "dense_at_long", "takes": ("gradual_magnitude_at", 0.8)}},
        "contenders": {contenders!r},
    }}
'''
BASE = os.path.join(ROOT, "configs", "benchmark_tiny.py")
TWO = {"gradual_magnitude_at": [{"deadwood.learning_rate": 3e-3},
                                {"deadwood.learning_rate": 1e-2, "prune.power": 1}]}


def _write(folder, contenders, commit=True):
    folder.mkdir(exist_ok=True)
    path = folder / "search_t.py"
    path.write_text(SEARCH.format(base=BASE, contenders=contenders))
    if commit:
        git = lambda *a: subprocess.run(["git", *a], cwd=folder, check=True,  # noqa: E731
                                        capture_output=True)
        git("init", "-q")
        git("add", "search_t.py")
        git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "search")
    return str(path)


def test_a_search_must_be_committed_and_even(tmp_path):
    path = _write(tmp_path, TWO, commit=False)
    with pytest.raises(ValueError, match="commit it, unmodified"):
        search.commit_of(path)
    uneven = dict(TWO, global_magnitude_at=[{"deadwood.learning_rate": 1e-3}])
    with pytest.raises(ValueError, match="same number of candidates"):
        search.load(_write(tmp_path / "b", uneven))
    with pytest.raises(ValueError, match="unknown contenders"):
        search.load(_write(tmp_path / "c", {"magic": [{}]}))


def _fake_rows(results, s, figures):
    """Validation rows and worst cases with the given (sparsity, clean, worst) figures."""
    for i, (sparsity, clean, worst) in enumerate(figures):
        name = runner.row_name("gradual_magnitude_at", 0.8, 0, search.variant(s, i))
        runner.write_json(os.path.join(results, "digits_search", "validation", name + ".json"),
                          {"clean": clean, "pgd": worst, "sparsity": sparsity})
        runner.write_json(search._worst_path(s, results, "gradual_magnitude_at", i, 0.8),
                          {"accuracy": {"worst": worst}})


def test_the_rule_drops_missed_sparsities_then_takes_worst_case_then_clean(tmp_path):
    s = search.load(_write(tmp_path, {"gradual_magnitude_at": [{}] * 4}))
    results = str(tmp_path / "results")
    # 0: best worst case but misses its sparsity; 1 and 2 tie on the worst case
    # (within 0.01), 2 has the higher clean; 3 is clearly worse.
    _fake_rows(results, s, [(0.75, 0.99, 0.90), (0.8, 0.95, 0.800), (0.8, 0.97, 0.795),
                            (0.8, 0.99, 0.60)])
    assert search.choose(s, results)["choice"] == {"gradual_magnitude_at@0.8": 2}
    _fake_rows(results, s, [(0.75, 0.99, 0.90), (0.8, 0.95, 0.800), (0.8, 0.97, 0.70),
                            (0.8, 0.99, 0.60)])
    chosen = search.choose(s, results)
    assert chosen["choice"] == {"gradual_magnitude_at@0.8": 1}
    saved = json.load(open(os.path.join(results, "digits_search", "search_t.json")))
    assert saved["choice"] == chosen["choice"] and len(saved["commit"]) == 40


def test_the_stages_end_to_end_record_the_search_commit(tmp_path):
    s = search.load(_write(tmp_path, TWO))
    results, work = str(tmp_path / "results"), str(tmp_path / "work")
    calls = []

    def worst(config, model, x, y, selection):
        calls.append(len(x))
        return {"accuracy": {"worst": 0.5 + 0.1 * len(calls)}}   # the later candidate wins

    written = search.run_validation(s, results, work, worst_case_fn=worst)
    assert len(written) == 4 and calls == [50, 50]
    assert search.run_validation(s, results, work, worst_case_fn=worst) == []  # resumes
    assert search.choose(s, results)["choice"] == {"gradual_magnitude_at@0.8": 1}
    rows = [json.load(open(p)) for p in search.run_test(s, results, work)]
    assert sorted(r["method"] for r in rows) == ["dense_at_long", "gradual_magnitude_at"]
    commit = search.commit_of(s["path"])
    for row in rows:
        assert row["split"] == "test" and row["search"]["commit"] == commit
        assert row["config"]["deadwood"]["learning_rate"] == 1e-2
    ceiling = next(r for r in rows if r["method"] == "dense_at_long")
    assert ceiling["sparsity"] == 0.0 and ceiling["target_sparsity"] == 0.0
    assert next(r for r in rows if r["method"] != "dense_at_long")["config"]["prune"][
        "power"] == 1


def test_the_selection_figure_is_the_cascade_under_the_search_settings(digits):
    import keras

    from deadwood_tf.benchmarks import worst_case
    from conftest import small_cnn, tiny_benchmark_config, train

    keras.utils.set_random_seed(0)
    model = train(small_cnn(), digits[0][:300], digits[1][:300], epochs=3)
    selection = {"examples": 40, "pgd_restarts": 1, "apgd_steps": 3, "apgd_targets": 2,
                 "square": False}
    out = worst_case.selection_figure(tiny_benchmark_config(), model, digits[2][:40],
                                      digits[3][:40], selection)
    assert out["attacks"] == ["pgd5_restart0", "apgd_ce", "apgd_t"]   # no Square
    acc = out["accuracy"]
    assert acc["worst"] == acc["apgd_t"] <= acc["apgd_ce"] <= acc["pgd_restarts"] <= acc["clean"]
    assert out["selection"] == selection and out["evaluator"] == worst_case.EVALUATOR
    with pytest.raises(ValueError, match=r"unknown keys \['restarts'\]"):
        worst_case.selection_figure(tiny_benchmark_config(), model, digits[2][:8],
                                    digits[3][:8], {"restarts": 2})
