"""The whole Deadwood pipeline from one config: `train_and_evaluate(config, workdir)`.

Phases (each announced by a banner; each epoch shows Keras' progress bar):
teacher (train, or load `config.teacher_path`) -> Deadwood solve -> global cut
-> fine-tune -> evaluation (clean, FGSM, PGD) -> strip, save `.keras` ->
export `.tflite` (verified) -> the teacher's `.tflite`, both timed -> report.
Each phase is a building block of `pipeline` (the benchmark uses the same);
this module orchestrates them in a resumable work directory.

The work directory makes the run resumable and inspectable:

    run.lock                the holder of the directory (pid, host, start time)
    manifest.json           the sha256 of every artefact a resume relies on
    teacher_natural.keras   the teacher after natural training (when adversarial
                            training follows), teacher.keras the finished teacher
    backup_teacher/, backup_teacher_at/, backup/  the last epoch's state of a
                            running fit (`workdir.BackupCallback`)
    checkpoints.jsonl       per epoch end, and at each resume: a digest of the masks
                            and multipliers, so a resume can be checked
    history.csv             per-epoch logs of the Deadwood fit
    tensorboard/            scalars (losses, accuracy, sparsity, multipliers,
                            violations) and a histogram of the multipliers
    model.keras, multipliers.npz  the stripped student and the final multipliers
    model.tflite            the verified TFLite export
    teacher.tflite          the dense teacher exported the same way (dense storage), for
                            report.md's before / after table (bytes, LiteRT latency);
                            with export.quantize, *_float32.tflite as well
    report.json, report.md, *.png   every figure, the config, versions, timings

Guarantees (see README, "What the pipeline guarantees"): one run per work
directory at a time (`workdir.Workdir.lock`); every artefact is written
atomically and its sha256 recorded; on a rerun, finished phases are skipped
after their files verify, a running fit resumes from its last verified epoch
(the banner says from where), and a damaged file is moved aside to
`NAME.corrupt-<time>` and its phase redone. The data is checked when loaded
(`checks`). Kill the process at any point and rerun the same command.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import time

import keras
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging

from deadwood_tf import attacks as attacks_lib
from deadwood_tf import callbacks as callbacks_lib
from deadwood_tf import checks
from deadwood_tf import config as config_lib
from deadwood_tf import data as data_lib
from deadwood_tf import export as export_lib
from deadwood_tf import models as models_lib
from deadwood_tf import channel_impl, pipeline, prune, report as report_lib, shrink
from deadwood_tf.atomic import TMP_PREFIX
from deadwood_tf.deadwood_model import BATCH_NORM_MODES
from deadwood_tf.workdir import BackupCallback, Workdir


def banner(text: str) -> None:
    print(f"\n{'=' * 72}\n== {text}\n{'=' * 72}", flush=True)


FIT_VERBOSE = pipeline.FIT_VERBOSE


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
                 "prune.finetune_epochs", "data.batch_size", "report.latency_rounds",
                 "report.latency_invokes"):
        section, field = name.split(".")
        value = config[section][field]
        minimum = 1 if field in ("batch_size", "latency_invokes") else 0
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"Invalid value for `{name}`: expected an int >= {minimum}. "
                             f"Received: {value!r}")
    if config.prune.solve_epochs + config.prune.finetune_epochs < 1:
        raise ValueError("Invalid values for `prune.solve_epochs` and `prune.finetune_epochs`: "
                         "expected at least one epoch in all. Received: 0 and 0")
    if config.export.quantize not in ("", "dynamic", "float16", "int8"):
        raise ValueError("Invalid value for `export.quantize`: expected '', 'dynamic', "
                         f"'float16' or 'int8'. Received: {config.export.quantize!r}")
    pruning_impl.check_pattern(config.prune.get("pattern") or None, "prune.pattern")
    channel_impl.check_round_to(config.prune.get("round_to", 1), config.prune.get("pattern"),
                                "prune.round_to")
    if config.prune.scope not in pruning_impl.SCOPES:
        raise ValueError(f"Invalid value for `prune.scope`: expected one of "
                         f"{pruning_impl.SCOPES}. Received: {config.prune.scope!r}")
    if config.deadwood.robust_target not in ("label", "teacher"):
        raise ValueError("Invalid value for `deadwood.robust_target`: expected 'label' or "
                         f"'teacher'. Received: {config.deadwood.robust_target!r}")
    if config.teacher_path and not os.path.exists(config.teacher_path):
        raise FileNotFoundError(
            f"Invalid value for `teacher_path`: no file at {config.teacher_path!r}.")
    if config.attack.name not in attacks_lib.TRAINING_ATTACKS:
        raise ValueError(
            f"Invalid value for `attack.name`: expected one of {attacks_lib.TRAINING_ATTACKS} "
            "(the training step runs the attack in the graph; ART's attacks are for evaluation "
            f"only). Received: {config.attack.name!r}")
    if config.prune.schedule not in callbacks_lib.SCHEDULE_NAMES:
        raise ValueError(f"Invalid value for `prune.schedule`: expected one of "
                         f"{callbacks_lib.SCHEDULE_NAMES}. Received: {config.prune.schedule!r}")
    if config.deadwood.batch_norm not in BATCH_NORM_MODES:
        raise ValueError(f"Invalid value for `deadwood.batch_norm`: expected one of "
                         f"{BATCH_NORM_MODES}. Received: {config.deadwood.batch_norm!r}")
    attacks_lib.from_config(config.attack)
    pipeline.make_optimizer(config, 1e-3)
    attacks_lib.eval_attacks_from_config(config)
    pipeline.per_epoch_attack(config)
    callbacks_lib.from_config(config, verbose=0)
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


def _repair_appended_log(path) -> None:
    """Cuts a line a kill tore off the end of an appended log (history.csv, checkpoints.jsonl)."""
    if not os.path.exists(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            f.truncate(end)
            print(f"deadwood_tf: {os.path.basename(path)}: removed an incomplete last line "
                  "(an interrupted write)", flush=True)


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
    """Appends state digests to checkpoints.jsonl: at (re)start and at each epoch end.

    Put it after the BackupCallback: the digest at a resume is of the restored state.
    """

    def __init__(self, path, initial_epoch=0):
        super().__init__()
        self.path, self.initial_epoch = path, initial_epoch

    def _write(self, entry):
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def on_train_begin(self, logs=None):
        epoch = self.initial_epoch
        self._write({"event": "resume" if epoch else "start", "epoch": epoch,
                     **_digest(self.model)})

    def on_epoch_end(self, epoch, logs=None):
        self._write({"event": "epoch_end", "epoch": epoch + 1, **_digest(self.model)})


class _PhaseBanner(keras.callbacks.Callback):
    def __init__(self, solve_epochs, initial_epoch=0):
        super().__init__()
        self.solve_epochs, self.initial_epoch = solve_epochs, initial_epoch

    def on_epoch_begin(self, epoch, logs=None):
        resumed = (f", resumed at epoch {epoch + 1}"
                   if epoch == self.initial_epoch and epoch else "")
        if epoch < self.solve_epochs and (epoch == 0 or resumed):
            banner(f"Deadwood solve phase: epochs 1-{self.solve_epochs}{resumed} "
                   "(primal steps on the weights, dual steps on the multipliers)")
        if epoch == self.solve_epochs or (resumed and epoch > self.solve_epochs):
            banner(f"Fine-tune phase: epochs {self.solve_epochs + 1}-{self.params['epochs']}"
                   f"{resumed} (masks fixed, distillation + adversarial training)")


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


def _start_fit(wd: Workdir, backup_name: str, title: str, epochs: int, details: str,
               redo: str) -> BackupCallback:
    """The fit's backup callback, its resume epoch verified; a banner says where it starts."""
    backup = BackupCallback(wd, backup_name)
    start = backup.resume_epoch(redo)
    if start:
        banner(f"{title}: resuming at epoch {start + 1}/{epochs} from "
               f"{os.path.relpath(backup.path, wd.path)} ({details})")
    else:
        banner(f"{title}, {epochs} epochs ({details})")
    return backup


def _load_teacher_path(config, ds):
    """The teacher of `config.teacher_path`, checked against the data."""
    banner(f"Teacher: loading {config.teacher_path}")
    try:
        teacher = keras.models.load_model(config.teacher_path)
    except Exception as e:  # Keras says "File not found" of a truncated file that exists
        raise ValueError(
            f"Invalid value for `teacher_path`: {config.teacher_path} exists "
            f"({os.path.getsize(config.teacher_path):,} bytes) but does not load as a Keras "
            f"model; is it a complete .keras file? ({type(e).__name__}: {e})") from e
    prune.check_keras_model(teacher, "teacher_path")
    if tuple(teacher.inputs[0].shape[1:]) != ds.input_shape or \
            teacher.outputs[0].shape[-1] != ds.num_classes:
        raise ValueError(
            f"Invalid value for `teacher_path`: the model takes {teacher.inputs[0].shape[1:]} "
            f"and gives {teacher.outputs[0].shape[-1]} classes; the data has inputs "
            f"{ds.input_shape} and {ds.num_classes} classes.")
    return teacher


def _teacher_data(config, ds, phase):
    return ds.train_pipeline(config.data.batch_size, config.seed + pipeline.PHASE_SEEDS[phase],
                             with_index=False)


def _natural_teacher(config, ds, wd: Workdir, natural_name):
    """The teacher after natural training: found in the work directory, or
    built and trained (resuming a killed fit)."""
    c = config.teacher
    if c.adversarial_epochs and c.epochs:
        teacher = wd.load(natural_name, keras.models.load_model,
                          "redoing the teacher's natural training")
        if teacher is not None:
            banner(f"Teacher: found {wd.file(natural_name)} (natural training done before, "
                   "sha256 verified), loading it")
            return teacher
    teacher = models_lib.build_model(config.model.name, ds.input_shape, ds.num_classes,
                                     config.model.width, config.model.depth)
    if c.epochs:
        backup = _start_fit(wd, "backup_teacher", "Teacher: natural training", c.epochs,
                            f"{teacher.count_params():,} parameters",
                            "natural training starts over")
        pipeline.fit_natural(
            teacher, pipeline.make_optimizer(config, c.learning_rate),
            _teacher_data(config, ds, "natural"), c.epochs, initial_epoch=backup.initial_epoch,
            validation_data=(ds.x_test, ds.y_test), verbose=FIT_VERBOSE,
            callbacks=[backup, pipeline.progress(config, ds, "teacher")])
        wd.save_model(teacher, natural_name)
        backup.discard()
    return teacher


def _train_teacher(config, ds, wd: Workdir, timings):
    """The dense teacher: loaded from `teacher_path` or the work directory, or trained.

    Returns `(teacher, trained)`; `trained` says the teacher was (re)made in this run.
    """
    if config.teacher_path:
        return _load_teacher_path(config, ds), False
    teacher = wd.load("teacher.keras", keras.models.load_model, "redoing the teacher phase")
    if teacher is not None:
        banner(f"Teacher: found {wd.file('teacher.keras')} (phase done before, sha256 verified), "
               "loading it")
        for leftover in ("backup_teacher", "backup_teacher_at"):  # a kill before their removal
            wd.discard(leftover)
        return teacher, False
    t0 = time.time()
    c = config.teacher
    teacher = _natural_teacher(config, ds, wd, "teacher_natural.keras" if c.adversarial_epochs
                               else "teacher.keras")
    if c.adversarial_epochs:
        attack = attacks_lib.from_config(config.attack)
        backup = _start_fit(wd, "backup_teacher_at", "Teacher: adversarial training",
                            c.adversarial_epochs, repr(attack),
                            "adversarial training starts over")
        pipeline.fit_adversarial(
            teacher, attack, pipeline.make_optimizer(config, c.learning_rate),
            _teacher_data(config, ds, "adversarial"), c.adversarial_epochs,
            initial_epoch=backup.initial_epoch, validation_data=(ds.x_test, ds.y_test),
            verbose=FIT_VERBOSE, callbacks=[backup, pipeline.progress(config, ds, "teacher AT")])
    if not os.path.exists(wd.file("teacher.keras")):  # no epochs at all, or after AT
        wd.save_model(teacher, "teacher.keras")
    if c.adversarial_epochs:
        BackupCallback(wd, "backup_teacher_at").discard()
    timings["teacher_s"] = time.time() - t0
    return teacher, True


def _read_history(path) -> list[dict]:
    """history.csv rows, one per epoch (a re-run epoch after a resume replaces the old row)."""
    if not os.path.exists(path):
        return []
    rows = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            rows[int(row["epoch"])] = {k: float(v) for k, v in row.items() if v not in ("", None)}
    return [rows[k] for k in sorted(rows)]


# What the Deadwood phase leaves; a teacher made anew makes them stale.
_DEADWOOD_ARTEFACTS = ("backup", "model.keras", "multipliers.npz")


def _load_multipliers(path) -> dict:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _deadwood(config, ds, teacher, wd: Workdir, strategy, scope, timings):
    """The Deadwood fit (solve, cut, fine-tune), or its verified result from a
    previous run; returns `(stripped model, multipliers)`."""
    redo = "redoing the Deadwood phase"
    stripped = wd.load("model.keras", keras.models.load_model, redo)
    multipliers = wd.load("multipliers.npz", _load_multipliers, redo)
    if stripped is not None and multipliers is not None:
        banner(f"Deadwood: found {wd.file('model.keras')} (phase done before, sha256 "
               "verified), loading it")
        wd.discard("backup")  # a kill between the save and the backup's removal
        return stripped, multipliers
    t0 = time.time()
    p = config.prune
    history_path = wd.file("history.csv")
    states_path = wd.file("checkpoints.jsonl")
    for path in (history_path, states_path):
        _repair_appended_log(path)
    with scope():
        model = pipeline.compile_deadwood(
            pipeline.make_deadwood_model(config, teacher, ds.num_train), config, ["accuracy"])
    n_eval = min(config.eval.per_epoch_examples, len(ds.x_test))
    epochs = p.solve_epochs + p.finetune_epochs
    one_shot = p.schedule == "one_shot" or not p.solve_epochs
    how = ("one-shot after the solve phase" if one_shot else
           f"gradually (cubic, global) at the end of solve epochs 1-{p.solve_epochs}")
    backup = _start_fit(wd, "backup", "Deadwood", epochs,
                        f"target sparsity {p.target_sparsity}, cut {how}",
                        "the Deadwood fit starts over")
    start = backup.initial_epoch
    callbacks = [
        _PhaseBanner(p.solve_epochs, start),
        pipeline.progress(config, ds, "Deadwood"),
        pipeline.deadwood_callback(config),
        callbacks_lib.RobustAccuracy(ds.x_test[:n_eval], ds.y_test[:n_eval],
                                     pipeline.per_epoch_attack(config), collapse_drop=None),
        keras.callbacks.TensorBoard(wd.file("tensorboard")),
        _MultiplierHistogram(wd.file("tensorboard")),
        keras.callbacks.CSVLogger(history_path, append=True),
        backup,
        _StateLog(states_path, start),
    ]
    seed = config.seed + pipeline.PHASE_SEEDS["deadwood"]
    model.fit(_shard_by_data(ds.train_pipeline(config.data.batch_size, seed), strategy),
              initial_epoch=start, epochs=epochs, validation_data=(ds.x_test, ds.y_test),
              callbacks=callbacks, verbose=FIT_VERBOSE)
    multipliers = {"fidelity": model.fidelity_multipliers.numpy(),
                   "robustness": model.robustness_multipliers.numpy()}
    if p.get("pattern") == "channel":
        # Structured Deadwood: the cut channels are removed, not just zeroed
        # (verified against the masked model; raises if it differs by > 1e-5).
        stripped = shrink.shrink_model(model, sample_inputs=ds.x_test[:32])
    else:
        stripped = prune.strip_pruning(model)
    wd.save("multipliers.npz", lambda tmp: np.savez(tmp, **multipliers))
    wd.save_model(stripped, "model.keras")
    backup.discard()
    timings["deadwood_s"] = time.time() - t0
    return stripped, multipliers


def _write_report(wd: Workdir, **kwargs) -> dict:
    """`report.write_report` into a staging directory, then each file moved into
    place, report.json last: a kill leaves the previous report or the new one."""
    import shutil

    stage = wd.file(TMP_PREFIX + "report")
    shutil.rmtree(stage, ignore_errors=True)
    os.makedirs(stage)
    report = report_lib.write_report(stage, **kwargs)
    for name in sorted(os.listdir(stage), key=lambda n: n == "report.json"):
        os.replace(os.path.join(stage, name), wd.file(name))
    os.rmdir(stage)
    return report


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs the pipeline of `config` in `workdir`; returns the report (also written there).

    Raises:
      ValueError: a bad config field (named) or bad data (the array, file and
        first offending example named), before any training.
      workdir.WorkdirInUseError: another live run holds `workdir`; nothing
        was changed.
      OSError: a save failed (e.g. ENOSPC); the previous artefact is intact
        and rerunning resumes.
    """
    validate(config)
    for message in config_lib.inapplicable_fields(config):
        logging.warning("deadwood_tf: %s", message)
    strategy_name = config.get("strategy", "one_device")
    is_chief, task_index = worker_info(strategy_name)
    strategy = make_strategy(strategy_name)  # before any other TensorFlow work
    scope = strategy.scope if strategy is not None else contextlib.nullcontext
    if not is_chief:  # Keras' multi-worker pattern: the others write to their own dir
        workdir = os.path.join(workdir, f"workertemp_{task_index}")
    with Workdir(workdir, log=lambda m: print(m, flush=True)) as wd:
        return _run(config, wd, strategy, scope, is_chief, task_index)


def _load_data(config):
    """The dataset (checked against the attacks' input range) and the evaluation attacks."""
    banner(f"Data: {config.data.name}")
    attacks = attacks_lib.eval_attacks_from_config(config)
    value_range, range_of = checks.attack_range([attacks_lib.from_config(config.attack),
                                                 *attacks])
    ds = data_lib.load_dataset(config.data.name, config.data.path, config.data.num_train,
                               config.data.num_test, config.seed, value_range=value_range,
                               range_of=range_of, augment=config.data.get("augment", False))
    print(f"{ds.num_train} training and {len(ds.x_test)} test examples, inputs {ds.input_shape}, "
          f"{ds.num_classes} classes", flush=True)
    return ds, attacks


def _evaluate(config, models, x_eval, y_eval, attacks, timings) -> dict:
    """Per model (`{"teacher", "pruned"}`), its accuracies clean and under each attack."""
    banner("Evaluation: clean, FGSM and PGD accuracy (teacher and pruned model)")
    t0 = time.time()
    metrics = {}
    for who, m in models.items():
        print(f"{who}: {len(x_eval)} test examples, clean and {[a.name for a in attacks]}",
              flush=True)
        metrics[who] = pipeline.evaluate(config, m, x_eval, y_eval, verbose=1)["accuracy"]
    timings["evaluation_s"] = time.time() - t0
    return metrics


def _export(config, ds, teacher, stripped, x_eval, y_eval, metrics, pgd_name, wd, timings):
    """model.tflite (verified, and scored on the evaluation examples), then the
    before / after comparison with the teacher exported the same way."""
    banner("Export: sparse TFLite, verified with LiteRT")
    t0 = time.time()
    export_info = pipeline.export_verified(ds, stripped, wd.file("model.tflite"),
                                           config.export.sparse, config.export.quantize or None)
    export_info["test_accuracy"] = float(np.mean(
        export_lib.run_tflite(export_info["path"], x_eval,
                              builtin_kernels=not export_info["runs_on_default_interpreter"]
                              ).argmax(-1) == y_eval))
    timings["export_s"] = time.time() - t0

    banner("Before / after: the teacher exported like the student, both timed with LiteRT")
    t0 = time.time()
    before_after = pipeline.before_after(config, ds, teacher, stripped, export_info, metrics,
                                         pgd_name, wd.file)
    timings["before_after_s"] = time.time() - t0
    return export_info, before_after


def _run(config, wd: Workdir, strategy, scope, is_chief, task_index) -> dict:
    keras.utils.set_random_seed(config.seed)
    timings = {}
    started = time.time()
    ds, attacks = _load_data(config)
    with scope():
        teacher, teacher_trained = _train_teacher(config, ds, wd, timings)
    if teacher_trained:
        for name in _DEADWOOD_ARTEFACTS:
            if os.path.exists(wd.file(name)):
                wd.quarantine(name, "it was made from a previous teacher, which had to be redone",
                              "the Deadwood phase is redone")

    stripped, multipliers = _deadwood(config, ds, teacher, wd, strategy, scope, timings)

    if not is_chief:  # evaluation, export and report are the chief's
        print(f"deadwood_tf: worker {task_index} done; the chief writes the report", flush=True)
        return {"is_chief": False, "task_index": task_index, "workdir": wd.path}

    n = config.eval.num_examples or len(ds.x_test)
    x_eval, y_eval = ds.x_test[:n], ds.y_test[:n]
    metrics = _evaluate(config, {"teacher": teacher, "pruned": stripped}, x_eval, y_eval,
                        attacks, timings)
    export_info, before_after = _export(config, ds, teacher, stripped, x_eval, y_eval, metrics,
                                        attacks[-1].name, wd, timings)
    timings["total_s"] = time.time() - started

    banner("Report")
    report = _write_report(
        wd, config=config, dataset=ds, metrics=metrics, attacks=attacks,
        sparsity=prune.sparsity_report(stripped), export=export_info, before_after=before_after,
        history=_read_history(wd.file("history.csv")), multipliers=multipliers,
        timings=timings)
    print(report_lib.summary(report), flush=True)
    return report
