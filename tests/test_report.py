"""The pipeline's report: the before / after table (MACs, parameters, TFLite bytes,
LiteRT latency, clean and PGD accuracy) and the accuracy-vs-latency plot."""

import json
import math
import os

import pytest


@pytest.fixture(scope="module")
def channel_run(tmp_path_factory):
    """A tiny `prune.pattern=channel` run of the whole pipeline (seconds)."""
    from deadwood_tf import config as config_lib, train

    c = config_lib.default_config()
    c.data.num_train, c.data.num_test, c.data.batch_size = 256, 64, 64
    c.model.width = 8
    c.teacher.epochs, c.teacher.adversarial_epochs, c.teacher.learning_rate = 10, 0, 1e-2
    c.attack.eps, c.attack.steps, c.attack.step_size = 0.1, 1, 0.1
    c.eval.eps, c.eval.fgsm, c.eval.pgd_steps, c.eval.pgd_step_size = 0.1, False, 2, 0.05
    c.eval.per_epoch_examples = 0
    c.prune.pattern, c.prune.target_sparsity = "channel", 0.5
    c.prune.solve_epochs, c.prune.finetune_epochs = 1, 1
    c.report.latency_rounds, c.report.latency_invokes = 2, 2
    workdir = str(tmp_path_factory.mktemp("channel_run"))
    train.train_and_evaluate(c, workdir)
    return workdir


def _table(markdown, first_cell):
    """The cells after the first of the before / after table's row starting with `first_cell`."""
    section = markdown[markdown.index("## Before / after"):]
    for line in section.splitlines():
        if line.startswith(f"| {first_cell} |"):
            return [cell.strip() for cell in line.strip("|").split("|")][1:]
    raise AssertionError(f"no row {first_cell!r} in:\n{markdown}")


def test_channel_run_reports_both_models_before_and_after(channel_run):
    markdown = open(os.path.join(channel_run, "report.md")).read()
    header = _table(markdown, "model")
    assert header[:5] == ["MACs", "params", "float32 bytes", "float32 µs 1T", "float32 µs 2T"]
    rows = {who: _table(markdown, name) for who, name in
            (("teacher", "teacher (dense)"), ("student", "student (shrunk)"))}
    for cells in rows.values():
        assert len(cells) == len(header)
        values = [float(cell.replace(",", "")) for cell in cells]
        assert all(math.isfinite(v) and v > 0 for v in values[:5]), cells
        assert all(0 <= v <= 100 for v in values[5:]), cells
    assert _table(markdown, "student / teacher")[0].endswith("x")

    report = json.load(open(os.path.join(channel_run, "report.json")))
    models = report["before_after"]["models"]
    teacher, student = models["teacher"], models["student"]
    # The shrunk model computes fewer MACs with fewer parameters, in a smaller file.
    assert student["macs"] <= 0.6 * teacher["macs"]
    assert student["params"] < teacher["params"]
    assert student["files"]["float32"]["bytes"] < teacher["files"]["float32"]["bytes"]
    for row in models.values():
        assert os.path.getsize(os.path.join(channel_run, row["files"]["float32"]["file"])) == \
            row["files"]["float32"]["bytes"]
        assert set(row["files"]["float32"]["latency_us"]) == {"1", "2"}
    assert student["clean"] == report["metrics"]["pruned"]["clean"]
    assert teacher["pgd"] == report["metrics"]["teacher"][report["before_after"]["pgd"]]
    assert report["plots"]["accuracy_vs_latency"] == "accuracy_vs_latency.png"
    with open(os.path.join(channel_run, "accuracy_vs_latency.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "![accuracy_vs_latency](accuracy_vs_latency.png)" in markdown


def test_round_to_is_validated_with_the_field_named():
    from deadwood_tf import config as config_lib, train

    c = config_lib.default_config()
    c.prune.round_to = 0
    with pytest.raises(ValueError, match=r"`prune.round_to`: expected an int >= 1"):
        train.validate(c)
    c.prune.round_to = 8  # unstructured pattern: refused
    with pytest.raises(ValueError, match=r"`prune.round_to`: it aligns channel cuts"):
        train.validate(c)
    c.prune.pattern = "channel"
    train.validate(c)


def test_report_fields_are_validated_with_the_field_named():
    from deadwood_tf import config as config_lib, train

    for field, value, minimum in (("latency_rounds", -1, 0), ("latency_invokes", 0, 1)):
        c = config_lib.default_config()
        c.report[field] = value
        with pytest.raises(ValueError, match=rf"`report.{field}`: expected an int >= {minimum}"):
            train.validate(c)
