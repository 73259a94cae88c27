"""Writes docs/model_coverage.md: each model through each step of the pipeline.

  python tools/check_coverage.py [--output=docs/model_coverage.md] [--models=NAME,NAME] [--nojax]

Needs keras-hub for the KerasHub rows and jax for the JAX column (`pip install
-e ".[test]"`). The JAX column runs in one KERAS_BACKEND=jax process of its
own, alongside the TensorFlow steps. A failing step shows its error in its
cell; the run goes on.
"""

import datetime
import os
import platform
import tempfile
import time

from absl import app, flags

_OUTPUT = flags.DEFINE_string("output", "docs/model_coverage.md", "Markdown file to write.")
_MODELS = flags.DEFINE_list("models", None, "Model names (keys of coverage.MODELS); all by "
                            "default. The other models' rows already in --output are kept.")
_JAX = flags.DEFINE_bool("jax", True, "Fill the JAX column (a KERAS_BACKEND=jax process).")


def main(argv):
    del argv
    from deadwood_tf.benchmarks import coverage

    names = _MODELS.value or list(coverage.MODELS)
    unknown = [n for n in names if n not in coverage.MODELS]
    if unknown:
        raise app.UsageError(f"--models: unknown {unknown}; known: {list(coverage.MODELS)}")
    kept = ""
    if _MODELS.value and os.path.exists(_OUTPUT.value):
        with open(_OUTPUT.value) as f:
            kept = f.read()
    with tempfile.TemporaryDirectory() as tmp:
        jax_column = coverage.JaxColumn(names, tmp) if _JAX.value else None
        rows = []
        for name in names:
            start = time.perf_counter()
            rows.append(coverage.check(name))
            ok = sum(ok for ok, _ in rows[-1].cells.values())
            print(f"{name}: {ok}/{len(coverage.STEPS)} steps ok, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
            # After each row: a long run killed keeps what it did.
            _write(rows, kept, len(names), jax_column.cells() if jax_column else {})
        if jax_column:
            print("waiting for the JAX column", flush=True)
        jax_cells = jax_column.wait() if jax_column else {}
    _write(rows, kept, len(names), jax_cells, done=True)
    print(f"wrote {_OUTPUT.value}")


def _version(package):
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _write(rows, kept, planned, jax_cells, done=False):
    import keras
    import tensorflow as tf

    from deadwood_tf.benchmarks import coverage

    no_jax = "not run: rerun tools/check_coverage.py without --nojax"
    for row in rows:
        row.cells["jax"] = jax_cells.get(row.name, (False, no_jax if not _JAX.value else
                                                     "pending: the JAX process is not there yet"))
    pending = "" if done else (
        f"\n\n({planned - len(rows)} more models pending when this was written; "
        "the JAX column still running.)")
    text = f"""# Model coverage

Written by `python tools/check_coverage.py` ({datetime.date.today()}, Keras {keras.__version__},
TensorFlow {tf.__version__}, JAX {_version("jax")}, {platform.machine()}). Each model is tiny (inputs 32x32 or
16x16, sequences of 8 tokens, 2 transformer layers of width 16), built from its
arguments without weights, trained on {coverage.NUM_EXAMPLES} random examples for one epoch: this
shows that each step works on the architecture, not accuracy.

Columns, in pipeline order:
- **prunable kernels found / kernels**: variables `prune_registry` finds (walking every
  sub-layer) out of the model's trainable variables named `kernel`, `embeddings`,
  `depthwise_kernel` or `pointwise_kernel` (each counted once).
- **Deadwood fit**: `DeadwoodModel(prune_model(m), m, attack=PGD(0.03, steps=2))`, one
  epoch with `DeadwoodCallback(0.9, prune_epoch=0)`; ok when exactly `round(0.9 * P)`
  weights are zero. PGD perturbs the float inputs only; models whose inputs are all
  token ids get it in embedding space (`EmbeddingAttack(PGD(0.5, steps=2, norm="l2"))` on
  their token embedding); a model with several outputs puts the constraints on its first
  output and distils the others to the teacher's (`output=`, `other_output_losses=`).
- **masked weights still zero after training**: every masked weight is exactly zero
  after the fit (AdamW). Where the Deadwood fit failed, after a plain Keras fit of the
  pruned model cut to 90% instead (the cell says so).
- **strip + save + load**: `strip_pruning`, `.keras` save, `load_model(safe_mode=True)`:
  same class, same outputs, no deadwood object, sparsity kept.
- **export verified**: `dw.export_tflite` of the loaded model (of the stripped one when
  the `.keras` file does not load): the file's signature takes the model's inputs by name
  and returns its outputs by name; every output is checked against Keras on the same
  inputs (token ids within the vocabulary, 0/1 padding masks, floats in [0, 1)).
- **file sparsity**: `dw.export.tflite_sparsity(file, model)["model_sparsity"]`, the
  file's non-zero weights against the model's prunable weights, within 0.01 of Keras'.
  The converter stores identical constants once (all-zero kernels of one shape share a
  tensor), so the stored tensors' own sparsity is lower where whole kernels were cut; the
  cell says so.
- **JAX**: the same model built under `KERAS_BACKEND=jax` (all models in one process of
  their own): `prune_model`; a plain `fit` (AdamW, one epoch) with
  `DeadwoodCallback(0.9, prune_epoch=0)`, which cuts to exactly `round(0.9 * P)` before
  training; every masked weight exactly zero after it and kept weights moved;
  `strip_pruning`; `.keras` save and `load_model(safe_mode=True)` with the same outputs.
  `DeadwoodModel` (the dual step, the attacks) and `export_tflite` run on TensorFlow only,
  so the other columns are TensorFlow's.

{coverage.markdown(rows, kept)}{pending}
"""
    os.makedirs(os.path.dirname(_OUTPUT.value) or ".", exist_ok=True)
    with open(_OUTPUT.value, "w") as f:
        f.write(text)


if __name__ == "__main__":
    app.run(main)
