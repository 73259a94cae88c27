"""A fast, representative subset of the model coverage (docs/model_coverage.md):
the kinds of model that used to break prune_model or export_tflite, each
through the pipeline, with the table's cells asserted."""

import re

import pytest

from deadwood_tf import coverage

ALL = coverage.STEPS


@pytest.mark.parametrize("name, must_pass, inputs, outputs", [
    ("functional with ops between layers", ALL, "input", "logits"),
    ("subclassed", ALL, "input", "output_0"),
    # Token inputs only: Deadwood's attack runs in embedding space.
    ("KerasHub BertBackbone + head", ALL, "padding_mask, segment_ids, token_ids", "logits"),
    ("two inputs (shared encoder)", ALL, "left, right", "logits"),
    # The constraints on "logits", "aux" distilled to the teacher's.
    ("two outputs", ALL, "input", "logits, aux"),
])
def test_pipeline_steps_on_models_nobody_here_wrote(name, must_pass, inputs, outputs):
    row = coverage.check(name)
    assert set(row.cells) == set(ALL)
    failed = {k: text for k, (ok, text) in row.cells.items() if k in must_pass and not ok}
    assert not failed, failed
    export_ok, export_text = row.cells["tflite_export"]
    assert f"inputs {inputs}; outputs {outputs};" in export_text
    diff = float(re.search(r"max abs diff ([0-9.e+-]+)", export_text).group(1))
    assert diff <= 1e-4
    file, keras = map(float, re.match(r"([0-9.]+) \(Keras: ([0-9.]+)\)",
                                      row.cells["tflite_sparsity"][1]).groups())
    assert abs(file - keras) <= 0.01 and keras >= 0.89
    for ok, text in row.cells.values():  # a failure says why, never just "failed"
        assert ok or len(text) > 40
    deadwood = row.cells["deadwood_fit"][1]
    if name.startswith("KerasHub Bert"):
        assert "PGD in embedding space, on 'token_embedding'" in deadwood
    if name == "two outputs":
        assert "constraints on 'logits'; others distilled" in deadwood


def test_a_failed_step_shows_its_error_and_later_steps_say_not_run():
    rows = [coverage.Row("two outputs", {"kernels": (True, "3 / 3"), "deadwood_fit": (
        False, "ValueError: Invalid value for argument `output`: the student has 2 outputs")})]
    table = coverage.markdown(rows)
    assert "| two outputs | ok: 3 / 3 | **FAIL**: ValueError: Invalid value" in table
    assert table.count("not run") == len(ALL) - 2


def test_a_failure_outside_deadwood_gets_advice():
    error = TypeError("Unrecognized keyword arguments passed to ViTPatchingAndEmbedding: "
                      "{'num_patches': 16}")
    assert "rebuild the model from its arguments" in coverage._hint(error)
    assert coverage._hint(ValueError("other")) == ""
