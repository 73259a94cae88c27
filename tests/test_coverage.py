"""A fast, representative subset of the model coverage (docs/model_coverage.md):
the kinds of model that used to break prune_model, each through the pipeline."""

import pytest

from deadwood_tf import coverage

ALL = coverage.STEPS
TO_SAVE = ("kernels", "deadwood_fit", "masked_stay_zero", "strip_save_load")
NO_DEADWOOD = ("kernels", "masked_stay_zero", "strip_save_load")


@pytest.mark.parametrize("name, must_pass", [
    ("functional with ops between layers", ALL),
    # TFLite: export_tflite reads `model.inputs`, which a subclassed model lacks.
    ("subclassed", TO_SAVE),
    # Token inputs only: Deadwood runs with attack=None (nothing to perturb); one
    # output but three inputs, which export_tflite refuses.
    ("KerasHub BertBackbone + head", TO_SAVE),
    # PGD perturbs both image inputs; export_tflite refuses several inputs.
    ("two inputs (shared encoder)", TO_SAVE),
    ("two outputs", NO_DEADWOOD),
])
def test_pipeline_steps_on_models_nobody_here_wrote(name, must_pass):
    row = coverage.check(name)
    failed = {k: text for k, (ok, text) in row.cells.items() if k in must_pass and not ok}
    assert not failed, failed
    assert set(row.cells) == set(ALL)


def test_two_outputs_get_a_clear_error_from_deadwood_and_the_table_shows_it():
    rows = [coverage.Row("two outputs", {"kernels": (True, "3 / 3"), "deadwood_fit": (
        False, "ValueError: Invalid value for argument `student`: expected a model with one output")})]
    table = coverage.markdown(rows)
    assert "| two outputs | ok: 3 / 3 | **FAIL**: ValueError: Invalid value" in table
    assert table.count("not run") == len(ALL) - 2
