"""Writes docs/model_coverage.md: each model through each step of the pipeline.

  python tools/check_coverage.py [--output=docs/model_coverage.md] [--models=NAME,NAME]

Needs keras-hub for the KerasHub rows (`pip install -e ".[test]"`). A failing
step shows its error in its cell; the run goes on.
"""

import datetime
import os
import platform
import time

from absl import app, flags

_OUTPUT = flags.DEFINE_string("output", "docs/model_coverage.md", "Markdown file to write.")
_MODELS = flags.DEFINE_list("models", None, "Model names (keys of coverage.MODELS); all by "
                            "default. The other models' rows already in --output are kept.")


def main(argv):
    del argv
    from deadwood_tf import coverage

    names = _MODELS.value or list(coverage.MODELS)
    unknown = [n for n in names if n not in coverage.MODELS]
    if unknown:
        raise app.UsageError(f"--models: unknown {unknown}; known: {list(coverage.MODELS)}")
    rows = []
    for name in names:
        start = time.perf_counter()
        rows.append(coverage.check(name))
        ok = sum(ok for ok, _ in rows[-1].cells.values())
        print(f"{name}: {ok}/{len(coverage.STEPS)} steps ok, {time.perf_counter() - start:.0f} s",
              flush=True)
        _write(rows, len(names))  # after each row: a long run killed keeps what it did
    print(f"wrote {_OUTPUT.value}")


def _table(rows):
    """The table of `rows`; with --models, the other models' rows of the file kept."""
    from deadwood_tf import coverage

    new = coverage.markdown(rows).split("\n")
    if not _MODELS.value or not os.path.exists(_OUTPUT.value):
        return "\n".join(new)
    name = lambda line: line[2:].split(" | ")[0]  # noqa: E731
    kept = {name(l): l for l in open(_OUTPUT.value).read().split("\n")
            if l.startswith("| ") and not l.startswith("| model |")}
    kept.update({name(l): l for l in new[2:]})
    order = [n for n in coverage.MODELS if n in kept] + [n for n in kept
                                                          if n not in coverage.MODELS]
    return "\n".join(new[:2] + [kept[n] for n in order])


def _write(rows, planned):
    import keras
    import tensorflow as tf

    from deadwood_tf import coverage

    pending = "" if len(rows) == planned else (
        f"\n\n({planned - len(rows)} more models pending when this was written.)")
    text = f"""# Model coverage

Written by `python tools/check_coverage.py` ({datetime.date.today()}, Keras {keras.__version__},
TensorFlow {tf.__version__}, {platform.machine()}). Each model is tiny (inputs 32x32 or
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

{_table(rows)}{pending}
"""
    os.makedirs(os.path.dirname(_OUTPUT.value) or ".", exist_ok=True)
    with open(_OUTPUT.value, "w") as f:
        f.write(text)


if __name__ == "__main__":
    app.run(main)
