"""The pipeline's building blocks, one of each, shared by `train.train_and_evaluate`,
the benchmark (`benchmarks.runner`, `benchmarks.baselines`) and the tools:

- the optimizer of a config (`make_optimizer`) and the teacher's two phases:
  natural training (`fit_natural`), then adversarial training (`fit_adversarial`);
- the Deadwood phase from a config: `make_deadwood_model` (the `DeadwoodModel`),
  `compile_deadwood` (its optimizer), `deadwood_callback` (its `DeadwoodCallback`)
  and `per_epoch_attack` (the PGD check after each epoch);
- evaluation (`evaluate`: clean, FGSM and PGD accuracy, sparsity, MACs, parameters);
- the export and its before / after comparison (`export_verified`, `before_after`).

Provenance (versions, machine, commit) is in `provenance`, the atomic write in
`atomic`. Each phase's data order comes from a base seed plus the phase's offset
(`PHASE_SEEDS`), the same in the pipeline (base `config.seed`) and the benchmark
(base `100 * seed`).

>>> from deadwood_tf.config import default_config
>>> make_optimizer(default_config(), 1e-3).__class__.__name__
'Adam'
"""

from __future__ import annotations

import os
import sys

import keras
import tensorflow as tf

from deadwood_tf import attacks as attacks_lib
from deadwood_tf import callbacks as callbacks_lib
from deadwood_tf import channel_groups, export, litert, prune
from deadwood_tf.adversarial import AdversarialTraining
from deadwood_tf.deadwood_model import DeadwoodModel

# Keras' animated progress bar on a terminal, one line per epoch in a log file.
FIT_VERBOSE = 1 if sys.stdout.isatty() else 2

# Offsets of each phase's data seed from the run's base seed.
PHASE_SEEDS = {"natural": 0, "adversarial": 1, "deadwood": 2}


def make_optimizer(config, learning_rate) -> keras.optimizers.Optimizer:
    """`config.optimizer` (a keras.optimizers name; "adam" when the config has
    none) at `learning_rate` (a float or a `keras.optimizers.schedules` schedule).

    Raises:
      ValueError: `config.optimizer` names no Keras optimizer.
    """
    name = config.get("optimizer", "adam")
    try:
        return keras.optimizers.get({"class_name": name,
                                     "config": {"learning_rate": learning_rate}})
    except (ValueError, TypeError) as e:
        raise ValueError(
            "Invalid value for `optimizer`: expected a keras.optimizers name such as 'adam', "
            f"'adamw' or 'sgd'. Received: {name!r}") from e


def progress(config, ds, title) -> callbacks_lib.Progress:
    """Epoch, images/s and ETA lines of a long fit (one worker's view under a strategy)."""
    return callbacks_lib.Progress(ds.num_train, config.data.batch_size, title)


def fit_natural(model, optimizer, data, epochs: int, **fit_kwargs) -> keras.Model:
    """Natural training of the classifier `model` (logits out) in place:
    cross-entropy, `optimizer`, `epochs` over `data` (batches of `(x, y)`).
    `fit_kwargs` go to `fit` (callbacks, initial_epoch, validation_data, verbose)."""
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(data, epochs=epochs, **fit_kwargs)
    return model


def fit_adversarial(model, attack, optimizer, data, epochs: int,
                    **fit_kwargs) -> AdversarialTraining:
    """Adversarial training of `model` in place (`AdversarialTraining` with
    `attack`), `epochs` over `data`; returns the trainer. `fit_kwargs` as
    `fit_natural`'s."""
    trainer = AdversarialTraining(model, attack)
    trainer.compile(optimizer)
    trainer.fit(data, epochs=epochs, **fit_kwargs)
    return trainer


def per_epoch_attack(config) -> attacks_lib.Attack:
    """The PGD of `val_pgd_accuracy` after each epoch: `eval.per_epoch_pgd_steps`
    steps of the default size at `eval.eps`, with `config.attack`'s norm and range."""
    e, a = config.eval, config.attack
    # .get: the benchmark's configs made before the field existed lack it.
    return attacks_lib.make_attack("pgd", e.eps, steps=e.get("per_epoch_pgd_steps", 10),
                                   norm=a.norm, clip_min=a.clip_min, clip_max=a.clip_max)


def sparsity_term(config):
    """DeadwoodModel's `sparsity_term` for `config.prune.pattern`: "group_lasso"
    for a channel cut; "l1" for every other cut, blocks included."""
    return "group_lasso" if config.prune.get("pattern") == "channel" else "l1"


def make_deadwood_model(config, teacher, num_examples: int, *, per_example: bool = True,
                        fidelity_multiplier: float | None = None) -> DeadwoodModel:
    """A DeadwoodModel on a masked copy of `teacher` with `config.deadwood`'s
    settings and `config.attack`.

    Args:
      num_examples: the training examples (one multiplier each).
      per_example: False: one scalar multiplier per constraint.
      fidelity_multiplier: the fidelity multipliers' starting value, when not
        `deadwood.initial_multiplier` (0 with no dual step: no distillation).
    """
    d = config.deadwood
    model = DeadwoodModel(
        prune.prune_model(teacher), teacher, attack=attacks_lib.from_config(config.attack),
        fidelity_bound=d.fidelity_bound, robustness_bound=d.robustness_bound,
        sparsity_weight=d.sparsity_weight, label_weight=d.label_weight,
        temperature=d.temperature, robust_target=d.robust_target,
        initial_multiplier=d.initial_multiplier, batch_norm=d.batch_norm,
        sparsity_term=sparsity_term(config), num_examples=num_examples if per_example else None)
    if fidelity_multiplier is not None:
        model.ensure_multipliers(num_examples if per_example else 1)
        model.fidelity_multipliers.assign(
            tf.fill(model.fidelity_multipliers.shape, float(fidelity_multiplier)))
    return model


def compile_deadwood(model: DeadwoodModel, config, metrics=None) -> DeadwoodModel:
    """Compiles `model` with `make_optimizer` at `deadwood.learning_rate`."""
    model.compile(make_optimizer(config, config.deadwood.learning_rate), metrics=metrics)
    return model


def deadwood_callback(config, target_sparsity=None) -> callbacks_lib.DeadwoodCallback:
    """The `DeadwoodCallback` of `config` (`callbacks.from_config`), cutting to
    `target_sparsity` when given, else to `prune.target_sparsity`."""
    return callbacks_lib.from_config(config, target_sparsity=target_sparsity)


def model_size(model) -> dict:
    """`{"macs", "params"}`: MACs of the convolutions and dense layers
    (`channel_groups`; None for a graph the channel analysis refuses) and parameters."""
    try:
        macs = int(channel_groups.channel_groups(model).total_macs)
    except ValueError:
        macs = None
    return {"macs": macs, "params": int(model.count_params())}


def evaluate(config, model, x, y, verbose=0) -> dict:
    """Clean, FGSM and PGD accuracy of `model` on `(x, y)` under `config.eval`'s
    attacks (`accuracy`: every attack's; `fgsm` None when `eval.fgsm` is off),
    its sparsity (global and per weight) and `model_size`."""
    attacks = attacks_lib.eval_attacks_from_config(config)
    acc = attacks_lib.evaluate_robustness(model, x, y, attacks, verbose=verbose)
    rep = prune.sparsity_report(model)
    return {**model_size(model), "clean": acc["clean"], "pgd": acc[attacks[-1].name],
            "fgsm": acc[attacks[0].name] if config.eval.fgsm else None,
            "accuracy": acc, "sparsity": rep.sparsity,
            "layer_sparsity": {w.name: w.sparsity for w in rep.weights}}


def export_verified(ds, model, path, sparse: bool, quantize) -> dict:
    """`export_tflite` of `model` to `path`, verified on the first 256 test examples
    (int8: calibrated on the first 256 training inputs)."""
    return export.export_tflite(
        model, path, sparse=sparse, quantize=quantize, sample_inputs=ds.x_test[:256],
        sample_labels=ds.y_test[:256],
        representative_data=ds.x_train[:256] if quantize == "int8" else None)


LATENCY_THREADS = (1, 2)
LATENCY_WARMUP = 20


def _export_both(config, ds, models, student_export, file) -> dict:
    """Per model, `{mode: {"file", "bytes"}}`: the teacher exported like the
    student, with dense storage, in float32 and `export.quantize`'s mode."""
    main_mode = config.export.quantize or "float32"
    out = {}
    for who, model, stem, sparse in (("teacher", models["teacher"], "teacher", False),
                                     ("student", models["student"], "model",
                                      config.export.sparse)):
        files = {}
        for mode in dict.fromkeys(["float32", main_mode]):
            if who == "student" and mode == main_mode:
                info = student_export
            else:
                name = stem + ("" if mode == main_mode else "_float32") + ".tflite"
                info = export_verified(ds, model, file(name), sparse,
                                       None if mode == "float32" else mode)
            files[mode] = {"file": os.path.basename(info["path"]), "bytes": info["bytes"]}
        out[who] = files
    return out


def before_after(config, ds, teacher, student, student_export, metrics, pgd_name,
                 file) -> dict:
    """The dense teacher against the student: MACs, parameters, clean and PGD
    accuracy (`metrics["teacher"|"pruned"]`), and for each TFLite file (float32,
    and `export.quantize`'s mode when set) its bytes and LiteRT latency
    (`LATENCY_THREADS`, interleaved). `file(name)`: the path of an output file.

    The teacher is exported like the student, with dense storage, next to it:
    `teacher.tflite` in model.tflite's mode; with `export.quantize` set, the
    float32 files `teacher_float32.tflite` and `model_float32.tflite` too.
    """
    models = {"teacher": teacher, "student": student}
    files = _export_both(config, ds, models, student_export, file)
    rows = {}
    for who, model in models.items():
        who_metrics = metrics["teacher" if who == "teacher" else "pruned"]
        rows[who] = {"macs": model_size(model)["macs"], "params": int(model.count_params()),
                     "clean": who_metrics["clean"], "pgd": who_metrics[pgd_name],
                     "files": files[who]}
    r = config.report
    if r.latency_rounds:
        paths = [file(f["file"]) for row in rows.values() for f in row["files"].values()]
        latency = litert.time_files(paths, LATENCY_THREADS, rounds=r.latency_rounds,
                                    invokes=r.latency_invokes, warmup=LATENCY_WARMUP)
        for row in rows.values():
            for f in row["files"].values():
                f["latency_us"] = {t: by_file[f["file"]] for t, by_file in latency.items()}
    return {"pattern": config.prune.get("pattern") or "", "pgd": pgd_name, "models": rows,
            "latency": {"threads": list(LATENCY_THREADS), "rounds": r.latency_rounds,
                        "invokes": r.latency_invokes, "warmup": LATENCY_WARMUP}}
