"""The whole Deadwood pipeline from one config: `train_and_evaluate(config, workdir)`.

Phases (each announced by a banner; each epoch shows Keras' progress bar):
teacher (train, or load `config.teacher_path`) -> Deadwood solve -> global cut
-> fine-tune -> evaluation (clean, FGSM, PGD) -> strip, save `.keras` ->
export `.tflite` (verified) -> report.

The work directory makes the run resumable and inspectable:

    teacher.keras           the dense teacher (its phase is skipped when present)
    backup/, backup_teacher/  keras.callbacks.BackupAndRestore state of a running fit
    checkpoints.jsonl       per epoch end, and at each resume: a digest of the masks
                            and multipliers, so a resume can be checked
    history.csv             per-epoch logs of the Deadwood fit
    tensorboard/            scalars (losses, accuracy, sparsity, multipliers,
                            violations) and a histogram of the multipliers
    model.keras, multipliers.npz  the stripped student and the final multipliers
    model.tflite            the verified TFLite export
    report.json, report.md, *.png   every figure, the config, versions, timings

Kill the process at any point and rerun the same command: finished phases are
skipped and a running fit resumes from its last epoch.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import sys
import time

import keras
import ml_collections
import numpy as np
import tensorflow as tf

from deadwood_tf import attacks as attacks_lib
from deadwood_tf import data as data_lib
from deadwood_tf import export as export_lib
from deadwood_tf import models as models_lib
from deadwood_tf import prune, report as report_lib
from deadwood_tf.adversarial import AdversarialTraining
from deadwood_tf.callbacks import DeadwoodCallback
from deadwood_tf.deadwood_model import DeadwoodModel


def banner(text: str) -> None:
    print(f"\n{'=' * 72}\n== {text}\n{'=' * 72}", flush=True)


def make_attack(c: ml_collections.ConfigDict) -> attacks_lib.Attack:
    """The training attack of `config.attack`."""
    if c.name == "pgd":
        return attacks_lib.PGD(c.eps, steps=c.steps, step_size=c.step_size, norm=c.norm,
                               random_start=c.random_start, clip_min=c.clip_min,
                               clip_max=c.clip_max)
    if c.name == "fgsm":
        return attacks_lib.FGSM(c.eps, norm=c.norm, clip_min=c.clip_min, clip_max=c.clip_max)
    raise ValueError(
        f"Invalid value for `attack.name`: expected 'pgd' or 'fgsm'. Received: {c.name!r}")


def make_optimizer(config, learning_rate: float) -> keras.optimizers.Optimizer:
    """`config.optimizer` (a keras.optimizers name) at `learning_rate`."""
    try:
        return keras.optimizers.get({"class_name": config.optimizer,
                                     "config": {"learning_rate": learning_rate}})
    except (ValueError, TypeError) as e:
        raise ValueError(
            "Invalid value for `optimizer`: expected a keras.optimizers name such as 'adam', "
            f"'adamw' or 'sgd'. Received: {config.optimizer!r}") from e


# Keras' animated progress bar on a terminal, one line per epoch in a log file.
FIT_VERBOSE = 1 if sys.stdout.isatty() else 2


def make_deadwood_model(config, teacher, num_examples: int) -> DeadwoodModel:
    """A DeadwoodModel on a masked copy of `teacher` with `config.deadwood`'s settings."""
    d = config.deadwood
    return DeadwoodModel(
        prune.prune_model(teacher), teacher, attack=make_attack(config.attack),
        fidelity_bound=d.fidelity_bound, robustness_bound=d.robustness_bound,
        sparsity_weight=d.sparsity_weight, label_weight=d.label_weight,
        temperature=d.temperature, robust_target=d.robust_target,
        initial_multiplier=d.initial_multiplier, num_examples=num_examples)


def eval_attacks(config) -> list:
    """The evaluation attacks: FGSM (optional) and PGD with a random start."""
    c, a = config.eval, config.attack
    out = []
    if c.fgsm:
        out.append(attacks_lib.FGSM(c.eps, norm=a.norm, clip_min=a.clip_min, clip_max=a.clip_max))
    out.append(attacks_lib.PGD(c.eps, steps=c.pgd_steps, step_size=c.pgd_step_size, norm=a.norm,
                               random_start=True, clip_min=a.clip_min, clip_max=a.clip_max))
    return out


def make_schedule(config):
    """`(schedule, unit)` for DeadwoodCallback from `config.prune`."""
    p = config.prune
    if p.schedule == "one_shot" or p.solve_epochs == 0:
        return None, "step"
    if p.schedule == "gradual":
        import tensorflow_model_optimization as tfmot

        return tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.0, final_sparsity=p.target_sparsity, begin_step=0,
            end_step=p.solve_epochs, power=p.power, frequency=1), "epoch"
    raise ValueError(
        "Invalid value for `prune.schedule`: expected 'gradual' or 'one_shot'. "
        f"Received: {p.schedule!r}")


STRATEGIES = ("one_device", "mirrored", "multi_worker")


def check_strategy(name, what="strategy"):
    """`name` if it is one of STRATEGIES; else a ValueError naming `what` (field or flag)."""
    if name not in STRATEGIES:
        raise ValueError(f"Invalid value for `{what}`: expected one of {STRATEGIES}. "
                         f"Received: {what}={name!r}")
    return name


def worker_info(strategy: str, tf_config: str | None = None) -> tuple[bool, int]:
    """`(is_chief, task_index)` of this process, from `TF_CONFIG` under multi_worker.

    The chief is task `chief`, or `worker` 0 when the cluster has no `chief`
    (Keras' convention); it alone writes into the work directory.
    """
    if strategy != "multi_worker":
        return True, 0
    raw = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not raw:
        return True, 0  # one worker: MultiWorkerMirroredStrategy over local devices
    try:
        parsed = json.loads(raw)
        task, cluster = parsed["task"], parsed["cluster"]
        kind, index = task["type"], int(task["index"])
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(
            "Invalid value for the environment variable `TF_CONFIG`: expected JSON with "
            '"cluster" and "task": {"type": ..., "index": ...}. '
            f"Received: TF_CONFIG={raw!r} ({type(e).__name__}: {e})") from None
    if kind not in ("chief", "worker"):
        raise ValueError(
            "Invalid value for the environment variable `TF_CONFIG`: expected task type "
            f"'chief' or 'worker'. Received: task type {kind!r}")
    return kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster), index


def make_strategy(name: str):
    """The tf.distribute strategy of `config.strategy`; None for one_device.

    Create it first: MultiWorkerMirroredStrategy must exist before TensorFlow
    initialises its runtime.
    """
    check_strategy(name)
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return None


def validate(config) -> None:
    """Checks the fields that would otherwise fail late, after minutes of training."""
    from deadwood_tf import pruning_impl

    check_strategy(config.get("strategy", "one_device"))
    if config.get("strategy", "one_device") == "multi_worker" and not config.teacher_path:
        # Keras 3.15's own fit of a plain model fails under multi-worker (it reduces
        # scalar step logs with axis=0); DeadwoodModel works around it, the teacher's
        # plain Keras fit cannot.
        raise ValueError(
            "Invalid values for `strategy` and `teacher_path`: strategy='multi_worker' "
            "needs a trained teacher in `teacher_path` (train it with one_device or "
            "mirrored first). Received: teacher_path=''")
    pruning_impl.check_sparsity(config.prune.target_sparsity, "prune.target_sparsity")
    for name in ("teacher.epochs", "teacher.adversarial_epochs", "prune.solve_epochs",
                 "prune.finetune_epochs", "data.batch_size"):
        section, field = name.split(".")
        value = config[section][field]
        if not isinstance(value, int) or value < 0 or (field == "batch_size" and value < 1):
            raise ValueError(f"Invalid value for `{name}`: expected an int >= "
                             f"{1 if field == 'batch_size' else 0}. Received: {value!r}")
    if config.prune.solve_epochs + config.prune.finetune_epochs < 1:
        raise ValueError("Invalid values for `prune.solve_epochs` and `prune.finetune_epochs`: "
                         "expected at least one epoch in all. Received: 0 and 0")
    if config.export.quantize not in ("", "dynamic", "float16", "int8"):
        raise ValueError("Invalid value for `export.quantize`: expected '', 'dynamic', "
                         f"'float16' or 'int8'. Received: {config.export.quantize!r}")
    pruning_impl.check_pattern(config.prune.get("pattern") or None, "prune.pattern")
    if config.teacher_path and not os.path.exists(config.teacher_path):
        raise FileNotFoundError(
            f"Invalid value for `teacher_path`: no file at {config.teacher_path!r}.")
    make_attack(config.attack)
    make_optimizer(config, 1e-3)
    eval_attacks(config)
    make_schedule(config)
    if config.model.name not in models_lib.MODELS and not config.teacher_path:
        raise ValueError(f"Invalid value for `model.name`: expected one of {models_lib.MODELS}. "
                         f"Received: {config.model.name!r}")


def _shard_by_data(dataset, strategy):
    """In-memory data has no files to shard: each worker keeps its share of the
    examples (the example index travels with each one, so multipliers stay right)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        dataset = dataset.with_options(options)
    return dataset


def _save_keras_atomically(model, path):
    tmp = path + ".tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)


def _digest(model) -> dict:
    """Short hashes of the masks and multipliers, to check that a resume restored them."""
    masks = hashlib.sha256()
    for _, m in prune.pruned_weights(model):
        masks.update(np.asarray(m.numpy()).tobytes())
    mult = hashlib.sha256()
    for v in (model.fidelity_multipliers, model.robustness_multipliers):
        mult.update(np.asarray(v.numpy()).tobytes())
    return {"masks": masks.hexdigest()[:16], "multipliers": mult.hexdigest()[:16],
            "sparsity": prune.sparsity_report(model).sparsity,
            "iterations": int(model.optimizer.iterations.numpy())}


class _StateLog(keras.callbacks.Callback):
    """Appends state digests to checkpoints.jsonl: at (re)start and at each epoch end."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def _write(self, entry):
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def on_train_begin(self, logs=None):
        epoch = int(getattr(self.model, "_initial_epoch", 0) or 0)
        if epoch:
            print(f"deadwood_tf: resuming the Deadwood fit at epoch {epoch + 1}", flush=True)
        self._write({"event": "resume" if epoch else "start", "epoch": epoch,
                     **_digest(self.model)})

    def on_epoch_end(self, epoch, logs=None):
        self._write({"event": "epoch_end", "epoch": epoch + 1, **_digest(self.model)})


class _PhaseBanner(keras.callbacks.Callback):
    def __init__(self, solve_epochs):
        super().__init__()
        self.solve_epochs = solve_epochs

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 0 and self.solve_epochs:
            banner(f"Deadwood solve phase: epochs 1-{self.solve_epochs} "
                   "(primal steps on the weights, dual steps on the multipliers)")
        if epoch == self.solve_epochs:
            banner(f"Fine-tune phase: epochs {self.solve_epochs + 1}-{self.params['epochs']} "
                   "(masks fixed, distillation + adversarial training)")


class _RobustAccuracy(keras.callbacks.Callback):
    """`val_pgd_accuracy` in the logs after each epoch, on a fixed test subset."""

    def __init__(self, x, y, attack):
        super().__init__()
        self.x, self.y, self.attack = x, y, attack

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and len(self.x):
            result = attacks_lib.evaluate_robustness(self.model.student, self.x, self.y,
                                                     [self.attack])
            logs["val_pgd_accuracy"] = result[self.attack.name]


class _MultiplierHistogram(keras.callbacks.Callback):
    def __init__(self, log_dir):
        super().__init__()
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "multipliers"))

    def on_epoch_end(self, epoch, logs=None):
        with self.writer.as_default():
            tf.summary.histogram("fidelity_multipliers", self.model.fidelity_multipliers.value,
                                 step=epoch)
            tf.summary.histogram("robustness_multipliers",
                                 self.model.robustness_multipliers.value, step=epoch)
        self.writer.flush()


def _train_teacher(config, ds, workdir, timings):
    path = os.path.join(workdir, "teacher.keras")
    if config.teacher_path:
        banner(f"Teacher: loading {config.teacher_path}")
        teacher = keras.models.load_model(config.teacher_path)
        prune.check_keras_model(teacher, "teacher_path")
        if tuple(teacher.inputs[0].shape[1:]) != ds.input_shape or \
                teacher.outputs[0].shape[-1] != ds.num_classes:
            raise ValueError(
                f"Invalid value for `teacher_path`: the model takes {teacher.inputs[0].shape[1:]} "
                f"and gives {teacher.outputs[0].shape[-1]} classes; the data has inputs "
                f"{ds.input_shape} and {ds.num_classes} classes.")
        return teacher
    if os.path.exists(path):
        banner(f"Teacher: found {path} (phase done before), loading it")
        return keras.models.load_model(path)
    t0 = time.time()
    teacher = models_lib.build_model(config.model.name, ds.input_shape, ds.num_classes,
                                     config.model.width, config.model.depth)
    c = config.teacher
    test = (ds.x_test, ds.y_test)
    backup = keras.callbacks.BackupAndRestore(os.path.join(workdir, "backup_teacher"))
    if c.epochs:
        banner(f"Teacher: natural training, {c.epochs} epochs ({teacher.count_params():,} "
               "parameters)")
        teacher.compile(make_optimizer(config, c.learning_rate),
                        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                        metrics=["accuracy"])
        teacher.fit(ds.train_pipeline(config.data.batch_size, config.seed, with_index=False),
                    epochs=c.epochs, validation_data=test, callbacks=[backup], verbose=FIT_VERBOSE)
    if c.adversarial_epochs:
        attack = make_attack(config.attack)
        banner(f"Teacher: adversarial training, {c.adversarial_epochs} epochs ({attack!r})")
        at = AdversarialTraining(teacher, attack)
        at.compile(make_optimizer(config, c.learning_rate))
        at.fit(ds.train_pipeline(config.data.batch_size, config.seed + 1, with_index=False),
               initial_epoch=0, epochs=c.adversarial_epochs, validation_data=test,
               callbacks=[keras.callbacks.BackupAndRestore(
                   os.path.join(workdir, "backup_teacher_at"))], verbose=FIT_VERBOSE)
    _save_keras_atomically(teacher, path)
    timings["teacher_s"] = time.time() - t0
    return teacher


def _read_history(path) -> list[dict]:
    """history.csv rows, one per epoch (a re-run epoch after a resume replaces the old row)."""
    if not os.path.exists(path):
        return []
    rows = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            rows[int(row["epoch"])] = {k: float(v) for k, v in row.items() if v not in ("", None)}
    return [rows[k] for k in sorted(rows)]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs the pipeline of `config` in `workdir`; returns the report (also written there)."""
    validate(config)
    strategy_name = config.get("strategy", "one_device")
    is_chief, task_index = worker_info(strategy_name)
    strategy = make_strategy(strategy_name)  # before any other TensorFlow work
    scope = strategy.scope if strategy is not None else contextlib.nullcontext
    if not is_chief:  # Keras' multi-worker pattern: the others write to their own dir
        workdir = os.path.join(workdir, f"workertemp_{task_index}")
    os.makedirs(workdir, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    timings = {}
    started = time.time()

    banner(f"Data: {config.data.name}")
    ds = data_lib.load_dataset(config.data.name, config.data.path, config.data.num_train,
                               config.data.num_test, config.seed)
    print(f"{ds.num_train} training and {len(ds.x_test)} test examples, inputs {ds.input_shape}, "
          f"{ds.num_classes} classes", flush=True)

    with scope():
        teacher = _train_teacher(config, ds, workdir, timings)

    model_path = os.path.join(workdir, "model.keras")
    multipliers_path = os.path.join(workdir, "multipliers.npz")
    history_path = os.path.join(workdir, "history.csv")
    p, d = config.prune, config.deadwood
    if os.path.exists(model_path) and os.path.exists(multipliers_path):
        banner(f"Deadwood: found {model_path} (phase done before), loading it")
        stripped = keras.models.load_model(model_path)
        with np.load(multipliers_path) as f:
            multipliers = {k: f[k] for k in f.files}
    else:
        t0 = time.time()
        schedule, unit = make_schedule(config)
        with scope():
            model = make_deadwood_model(config, teacher, ds.num_train)
            model.compile(make_optimizer(config, d.learning_rate), metrics=["accuracy"])
        n_eval = min(config.eval.per_epoch_examples, len(ds.x_test))
        per_epoch_attack = attacks_lib.PGD(
            config.eval.eps, steps=config.eval.per_epoch_pgd_steps,
            step_size=2.5 * config.eval.eps / config.eval.per_epoch_pgd_steps,
            norm=config.attack.norm, clip_min=config.attack.clip_min,
            clip_max=config.attack.clip_max)
        epochs = p.solve_epochs + p.finetune_epochs
        how = ("one-shot after the solve phase" if schedule is None else
               f"gradually (cubic, global) at the end of solve epochs 1-{p.solve_epochs}")
        banner(f"Deadwood: {epochs} epochs, target sparsity {p.target_sparsity}, cut {how}")
        callbacks = [
            _PhaseBanner(p.solve_epochs),
            DeadwoodCallback(p.target_sparsity, prune_epoch=p.solve_epochs, schedule=schedule,
                             schedule_unit=unit, scope=p.scope, min_keep=p.min_keep,
                             dual_step_size=d.dual_step_size, max_multiplier=d.max_multiplier,
                             finetune_sparsity_weight=(d.finetune_sparsity_weight
                                                       if d.finetune_sparsity_weight >= 0
                                                       else None),
                             pattern=p.get("pattern") or None),
            _RobustAccuracy(ds.x_test[:n_eval], ds.y_test[:n_eval], per_epoch_attack),
            keras.callbacks.TensorBoard(os.path.join(workdir, "tensorboard")),
            _MultiplierHistogram(os.path.join(workdir, "tensorboard")),
            keras.callbacks.CSVLogger(history_path, append=True),
            keras.callbacks.BackupAndRestore(os.path.join(workdir, "backup")),
            _StateLog(os.path.join(workdir, "checkpoints.jsonl")),
        ]
        model.fit(_shard_by_data(ds.train_pipeline(config.data.batch_size, config.seed + 2),
                                 strategy), epochs=epochs,
                  validation_data=(ds.x_test, ds.y_test), callbacks=callbacks,
                  verbose=FIT_VERBOSE)
        multipliers = {"fidelity": model.fidelity_multipliers.numpy(),
                       "robustness": model.robustness_multipliers.numpy()}
        stripped = prune.strip_pruning(model)
        np.savez(multipliers_path + ".tmp.npz", **multipliers)
        os.replace(multipliers_path + ".tmp.npz", multipliers_path)
        _save_keras_atomically(stripped, model_path)  # last: marks the phase as done
        timings["deadwood_s"] = time.time() - t0

    if not is_chief:  # evaluation, export and report are the chief's
        print(f"deadwood_tf: worker {task_index} done; the chief writes the report", flush=True)
        return {"is_chief": False, "task_index": task_index, "workdir": workdir}

    banner("Evaluation: clean, FGSM and PGD accuracy (teacher and pruned model)")
    t0 = time.time()
    n = config.eval.num_examples or len(ds.x_test)
    x_eval, y_eval = ds.x_test[:n], ds.y_test[:n]
    attacks = eval_attacks(config)
    metrics = {}
    for who, m in (("teacher", teacher), ("pruned", stripped)):
        print(f"{who}: {len(x_eval)} test examples, clean and {[a.name for a in attacks]}",
              flush=True)
        metrics[who] = attacks_lib.evaluate_robustness(m, x_eval, y_eval, attacks, verbose=1)
    timings["evaluation_s"] = time.time() - t0

    banner("Export: sparse TFLite, verified with LiteRT")
    t0 = time.time()
    export_info = export_lib.export_tflite(
        stripped, os.path.join(workdir, "model.tflite"), sparse=config.export.sparse,
        quantize=config.export.quantize or None, sample_inputs=ds.x_test[:256],
        sample_labels=ds.y_test[:256],
        representative_data=ds.x_train[:256] if config.export.quantize == "int8" else None)
    export_info["test_accuracy"] = float(np.mean(
        export_lib.run_tflite(export_info["path"], x_eval,
                              builtin_kernels=not export_info["runs_on_default_interpreter"]
                              ).argmax(-1) == y_eval))
    timings["export_s"] = time.time() - t0
    timings["total_s"] = time.time() - started

    banner("Report")
    report = report_lib.write_report(
        workdir, config=config, dataset=ds, metrics=metrics, attacks=attacks,
        sparsity=prune.sparsity_report(stripped), export=export_info,
        history=_read_history(history_path), multipliers=multipliers, timings=timings)
    print(report_lib.summary(report), flush=True)
    return report
