"""A fast, representative subset of the model coverage (docs/model_coverage.md):
the kinds of model that used to break prune_model or export_tflite, each
through the pipeline, with the table's cells asserted; and the committed
table itself, every column (JAX's included) of every model. The JAX column's
computation runs in tests/test_backends.py's JAX process."""

import os
import re

import pytest

from deadwood_tf.benchmarks import coverage

ALL = coverage.STEPS
TABLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                     "model_coverage.md")
# The cells of the committed table that fail, each for a cause outside deadwood_tf
# that its cell explains (KerasHub 0.32's ViT has no loadable .keras file).
KNOWN_FAILURES = {("KerasHub ViTBackbone + head", "strip_save_load"): "rebuild the model",
                  ("KerasHub ViTBackbone + head", "jax"): "rebuild the model"}


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
    assert table.count("not run") == len(coverage.COLUMNS) - 2


def test_a_rerun_of_some_models_keeps_the_other_rows_and_pads_old_ones():
    old = coverage.markdown([coverage.Row(n, {k: (True, n) for k in ALL})
                             for n in ("subclassed", "two outputs")])
    old = old.replace(" | **FAIL**: not run |", " |")  # as written before the JAX column
    new = coverage.markdown([coverage.Row("two outputs", {"jax": (True, "fresh")})], kept=old)
    lines = new.split("\n")
    assert [l.split(" | ")[0] for l in lines[2:]] == ["| subclassed", "| two outputs"]
    assert all(len(l[2:-2].split(" | ")) == len(coverage.COLUMNS) + 1 for l in lines[2:])
    assert lines[2].endswith("| **FAIL**: not run: this row predates the column; rerun "
                             "tools/check_coverage.py --models='subclassed' |")
    assert lines[3].endswith("| ok: fresh |")


def test_a_failure_outside_deadwood_gets_advice():
    error = TypeError("Unrecognized keyword arguments passed to ViTPatchingAndEmbedding: "
                      "{'num_patches': 16}")
    assert "rebuild the model from its arguments" in coverage.hint(error)
    assert coverage.hint(ValueError("other")) == ""


def test_the_committed_table_has_every_model_and_column_ok_or_explained():
    with open(TABLE) as f:
        text = f.read()
    header, rule, *lines = [l for l in text.split("\n") if l.startswith("|")]
    assert [header, rule] == coverage.markdown([]).split("\n")
    assert "JAX" in header and "pending" not in text
    rows = {cells[0]: cells[1:] for cells in (l[2:-2].split(" | ") for l in lines)}
    assert list(rows) == list(coverage.MODELS)
    for name, cells in rows.items():
        assert len(cells) == len(coverage.COLUMNS), name
        for column, cell in zip(coverage.COLUMNS, cells):
            if (name, column) in KNOWN_FAILURES:
                assert cell.startswith("**FAIL**: ") and KNOWN_FAILURES[name, column] in cell
            else:
                assert cell.startswith("ok: "), (name, column, cell)
    # The JAX cells: the exact cut, the zeros kept through fit, the .keras round trip.
    for name, cells in rows.items():
        if (name, "jax") not in KNOWN_FAILURES:
            cut, want = re.match(r"ok: cut (\d+) = round\(0.9 \* (\d+)\)", cells[-1]).groups()
            assert int(cut) == round(0.9 * int(want))
            assert "masked stay 0 through fit" in cells[-1]


def test_the_jax_column_says_when_jax_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(coverage.importlib.util, "find_spec", lambda name: None)
    cells = coverage.JaxColumn(["subclassed"], str(tmp_path)).wait()
    assert cells == {"subclassed": (False, "not run: jax is not installed here "
                                           "(`pip install -e .[test]` installs it)")}
