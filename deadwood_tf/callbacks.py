"""What `fit` calls: the dual step and the global cut; per-epoch robust
accuracy (with the catastrophic-overfitting check) and progress lines.

Example:

    dw_model.fit(x, y, epochs=6, callbacks=[
        DeadwoodCallback(target_sparsity=0.95, prune_epoch=3),  # gradual over epochs 1-3
        keras.callbacks.CSVLogger("log.csv")])   # after DeadwoodCallback: sees its logs
"""

from __future__ import annotations

import math
import time

import numpy as np
import keras
from absl import logging

from deadwood_tf import attacks as attacks_lib
from deadwood_tf import channel_groups, channel_impl, prune, pruning_impl, pruning_schedule
from deadwood_tf.deadwood_model import DeadwoodModel

SCHEDULE_UNITS = pruning_schedule.UNITS
SCHEDULE_NAMES = pruning_schedule.NAMES


def _check_number(value, name, low, inclusive=True, allow_none=False):
    if allow_none and value is None:
        return None
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and (value >= low if inclusive else value > low))
    if not ok:
        rel = ">=" if inclusive else ">"
        raise ValueError(f"Invalid value for argument `{name}`: expected a number {rel} {low}"
                         f"{' or None' if allow_none else ''}. Received: {name}={value!r}")
    return value


def _check_prune_epoch(prune_epoch):
    if prune_epoch is not None and (isinstance(prune_epoch, bool) or not isinstance(
            prune_epoch, (int, np.integer)) or prune_epoch < 0):
        raise ValueError(
            "Invalid value for argument `prune_epoch`: expected an int >= 0 or None. "
            f"Received: prune_epoch={prune_epoch!r}"
        )


def _dual_step_sizes(dual_step_size) -> tuple:
    steps = dual_step_size if isinstance(dual_step_size, (tuple, list)) else (
        dual_step_size, dual_step_size)
    if len(steps) != 2 or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) and s >= 0 for s in steps):
        raise ValueError(
            "Invalid value for argument `dual_step_size`: expected a number >= 0 or a pair "
            f"(fidelity, robustness) of them. Received: dual_step_size={dual_step_size!r}"
        )
    return tuple(float(s) for s in steps)


class DeadwoodCallback(keras.callbacks.Callback):
    """Dual step at each epoch end, and the cut: one-shot or along a schedule.

    Args:
      target_sparsity: fraction in [0, 1) of what `unit` counts to remove: of
        the prunable weights, or with `pattern="channel"` of the MACs.
      prune_epoch: number of epochs of the solve phase, over which the cut is
        made (0: cut before training). Default: half of `fit`'s epochs.
        Ignored when `schedule` is a schedule object.
      schedule: "gradual" (default): a cubic, global cut at the end of each
        solve epoch, `s_e = target * (1 - (1 - e / prune_epoch) ** power)`,
        reaching `target_sparsity` at the end of epoch `prune_epoch` (the
        configuration of the benchmark's headline rows, docs/benchmarks.md);
        "one_shot" (or None): one cut after epoch `prune_epoch` (the paper's
        form); a `pruning_schedule.PruningSchedule`; or a tfmot
        `PruningSchedule` (`PolynomialDecay`, `ConstantSparsity`, or any
        callable `step -> (should_prune, sparsity)`; `pruning_schedule.Tfmot`),
        whose final sparsity must equal `target_sparsity`.
      power: exponent of the "gradual" cut (3: cubic).
      schedule_unit: "step": the schedule is evaluated before each batch with
        the optimizer's step count (tfmot's convention); "epoch": after each
        epoch with the number of completed epochs, e.g.
        `PolynomialDecay(0, 0.95, begin_step=1, end_step=3, frequency=1)`
        cuts gradually at the end of epochs 1 to 3.
      scope: "global" (one threshold over all layers) or "layer".
      min_keep: guard against layer collapse: each layer keeps at least this
        many weights (int) or this fraction (float).
      dual_step_size: step of the multipliers' update; a float for both
        constraints or a pair `(fidelity, robustness)`; 3.0 was chosen on validation.
      max_multiplier: the multipliers are clipped to `[0, max_multiplier]`.
      finetune_sparsity_weight: the L1 weight `rho` becomes this value once the
        cut has reached `target_sparsity` (METHOD.md: rho may drop to 0 in the
        fine-tune phase; 0, the default, measured best in docs/benchmarks.md);
        None keeps `rho` through fine-tuning.
      verbose: 1 prints a line at each cut.
      pattern: structure of every cut (see `pruning_impl.keep_masks`): None,
        a block `(bh, bw)` or "BHxBW" such as "1x4", or "N:M" such as "2:4".
        Masks stay fixed between cuts, so the pattern holds through training.
        "channel": structured Deadwood: each cut removes whole channel groups
        (`prune.cut_channels`), to `target_sparsity` of the MACs with
        `unit="macs"`; pair it with `DeadwoodModel(sparsity_term="group_lasso")`
        and shrink the result with `shrink.shrink_model`.
      unit: what `target_sparsity` counts: "weights" (the default, and the
        only unit of the other patterns) or, with `pattern="channel"`, "macs"
        or "channels" (channel groups). A channel cut without `unit` counts
        MACs, with a DeprecationWarning.
      round_to: with `pattern="channel"`, every layer keeps a multiple of this
        many output channels (or all of them). Default 8: the shrunk model runs
        about as fast as its MACs promise on SIMD CPUs (at half the MACs, 2.00x
        against 1.49x with 1; `prune.cut_channels`). 1 cuts single channels.

    Writes into `logs` at each epoch end: `sparsity` (and, for a channel cut,
    `flops_removed`: the fraction of MACs removed), and the mean and max of
    both multipliers (`fidelity_multiplier_mean`, ..._max,
    `robustness_multiplier_mean`, ..._max). Place it before `CSVLogger` and
    `TensorBoard` in the callback list so they record these figures.

    Given to the `fit` of a plain model from `prune_model` (no `DeadwoodModel`),
    it makes the same cuts and nothing else: no dual step, no multipliers, no
    `rho`. That is gradual (or one-shot) global magnitude pruning, on any
    Keras backend.
    """

    def __init__(self, target_sparsity, prune_epoch=None, schedule="gradual", schedule_unit="step",
                 scope="global", min_keep=0, dual_step_size=3.0, max_multiplier=10.0,
                 finetune_sparsity_weight=0.0, verbose=1, pattern=None, power=3, round_to=None,
                 unit=None):
        super().__init__()
        self.target_sparsity = pruning_impl.check_sparsity(target_sparsity)
        _check_prune_epoch(prune_epoch)
        if schedule_unit not in SCHEDULE_UNITS:
            raise ValueError(
                f"Invalid value for argument `schedule_unit`: expected one of {SCHEDULE_UNITS}. "
                f"Received: schedule_unit={schedule_unit!r}"
            )
        self.power = _check_number(power, "power", 0, inclusive=False)
        self.schedule = pruning_schedule.get(schedule, self.target_sparsity, prune_epoch,
                                             power, schedule_unit)
        if scope not in pruning_impl.SCOPES:
            raise ValueError(
                f"Invalid value for argument `scope`: expected one of {pruning_impl.SCOPES}. "
                f"Received: scope={scope!r}"
            )
        pruning_impl.keep_counts([1], min_keep)  # validates min_keep
        pruning_impl.check_pattern(pattern)
        self.unit = prune.check_unit(unit, pattern)
        self.round_to = channel_impl.check_round_to(round_to, pattern)
        self.dual_step_size = _dual_step_sizes(dual_step_size)
        self.max_multiplier = float(_check_number(max_multiplier, "max_multiplier", 0,
                                                  inclusive=False))
        self.finetune_sparsity_weight = _check_number(
            finetune_sparsity_weight, "finetune_sparsity_weight", 0, allow_none=True)
        self.prune_epoch = prune_epoch
        self.schedule_unit = schedule_unit
        self.scope = scope
        self.min_keep = min_keep
        self.pattern = pattern
        self.verbose = verbose
        self._flops_removed = 0.0

    # ------------------------------------------------------------ helpers

    def _deadwood(self):
        """The DeadwoodModel being trained, or None for a plain pruned model."""
        return self.model if isinstance(self.model, DeadwoodModel) else None

    def _cut(self, cut):
        """Cuts to `cut.fraction` (a `pruning_schedule.Cut`), then, at the target,
        sets `rho` to `finetune_sparsity_weight`."""
        sparsity = cut.fraction
        reached = prune.apply_sparsity(self.model, sparsity, scope=self.scope,
                                       min_keep=self.min_keep, pattern=self.pattern,
                                       round_to=self.round_to, unit=self.unit,
                                       groups=self._channel_groups())
        if self.verbose:
            measured = {"macs": "MACs removed", "channels": "groups removed"}.get(
                self.unit, "measured")
            print(f"deadwood_tf: {cut.when} cut to sparsity {sparsity:.4f} ({measured} "
                  f"{reached:.4f})", flush=True)
        if self.unit == "macs":
            self._flops_removed = reached
        # A schedule computes its last sparsity in float32: compare with a tolerance.
        if self.finetune_sparsity_weight is not None and sparsity >= self.target_sparsity - 1e-6 \
                and self._deadwood() is not None:
            self.model.sparsity_weight_variable.assign(float(self.finetune_sparsity_weight))
        return reached

    def _channel_groups(self):
        """The model's channel groups, traced once per fit (None for weight cuts)."""
        if self.pattern != "channel":
            return None
        if getattr(self, "_groups", None) is None:
            self._groups = channel_groups.channel_groups(prune.unwrap_deadwood(self.model))
        return self._groups

    # ------------------------------------------------------------ hooks

    def on_train_begin(self, logs=None):
        model = self._deadwood()
        if model is None and not prune.pruned_weights(self.model):
            raise ValueError(
                "DeadwoodCallback must be passed to the `fit` of a DeadwoodModel or of a model "
                f"from deadwood_tf.prune_model; it was given to a {type(self.model).__name__} "
                "that carries no pruning masks.")
        if model is not None and self.pattern == "channel" and \
                model.sparsity_term != "group_lasso":
            logging.warning("deadwood_tf: DeadwoodCallback(pattern='channel') on a DeadwoodModel "
                            "whose sparsity term is the unstructured L1; pass "
                            "DeadwoodModel(sparsity_term='group_lasso') for the group lasso.")
        self._groups = None
        cut = self.schedule.at_train_begin(self._fit_epochs())
        if cut is not None:
            self._cut(cut)

    def _fit_epochs(self):
        return self.params.get("epochs", 0) if self.params else 0

    def on_epoch_begin(self, epoch, logs=None):
        model = self._deadwood()
        if model is not None:
            model.reset_violations()

    def on_train_batch_begin(self, batch, logs=None):
        if self.schedule.asks_each_step:
            cut = self.schedule.at_step(int(self.model.optimizer.iterations.numpy()))
            if cut is not None:
                self._cut(cut)

    def on_epoch_end(self, epoch, logs=None):
        model = self._deadwood()
        if model is not None:
            model.dual_step(*self.dual_step_size, self.max_multiplier)
        cut = self.schedule.at_epoch_end(epoch + 1, self._fit_epochs())
        if cut is not None:
            self._cut(cut)
        if logs is not None:
            self._write_logs(logs, model)

    def _write_logs(self, logs, model):
        logs["sparsity"] = prune.sparsity_report(self.model).sparsity
        if self.unit == "macs":
            logs["flops_removed"] = self._flops_removed
        if model is not None and model.num_examples is not None:
            for name, var in (("fidelity", model.fidelity_multipliers),
                              ("robustness", model.robustness_multipliers)):
                values = np.asarray(var.numpy())
                logs[f"{name}_multiplier_mean"] = float(values.mean())
                logs[f"{name}_multiplier_max"] = float(values.max())

    def on_train_end(self, logs=None):
        reached = prune.sparsity_report(self.model).sparsity
        num_prunable = sum(int(np.prod(w.shape)) for w, _ in prune.pruned_weights(self.model))
        target_zeros = pruning_impl.num_to_prune(self.target_sparsity, num_prunable)
        if self.scope == "global" and self.pattern is None and \
                prune.sparsity_report(self.model).zeros < target_zeros:
            logging.warning(
                "deadwood_tf: training ended at sparsity %.4f, below target_sparsity=%.4f "
                "(the cut comes later than the last epoch, or the schedule ends later).",
                reached, self.target_sparsity)


def from_config(config, target_sparsity=None, **overrides) -> DeadwoodCallback:
    """The `DeadwoodCallback` of a pipeline config (`config.prune`, `config.deadwood`).

    Reads `prune.{target_sparsity, schedule, power, solve_epochs, scope,
    min_keep, pattern, round_to}` (a config without `round_to` means 1; with
    `pattern="channel"` the target counts MACs) and `deadwood.{dual_step_size, max_multiplier,
    finetune_sparsity_weight}` (a negative `finetune_sparsity_weight` keeps
    rho through fine-tuning). `target_sparsity` and `overrides` (callback
    arguments) replace the config's values.
    """
    p, d = config.prune, config.deadwood
    sparsity = p.target_sparsity if target_sparsity is None else target_sparsity
    args = dict(
        prune_epoch=p.solve_epochs, schedule=p.schedule, power=p.power, scope=p.scope,
        min_keep=p.min_keep, pattern=p.pattern or None, round_to=p.get("round_to", 1),
        unit="macs" if p.pattern == "channel" else "weights",
        dual_step_size=d.dual_step_size,
        max_multiplier=d.max_multiplier,
        finetune_sparsity_weight=(d.finetune_sparsity_weight
                                  if d.finetune_sparsity_weight >= 0 else None))
    args.update(overrides)
    return DeadwoodCallback(sparsity, **args)


def _classifier(trained):
    """The classifier inside a training model: a DeadwoodModel's `student`, an
    AdversarialTraining's `model`, else the model itself."""
    for attr in ("student", "model"):
        inner = getattr(trained, attr, None)
        if isinstance(inner, keras.Model):
            return inner
    return trained


class RobustAccuracy(keras.callbacks.Callback):
    """Accuracy under `attack` on a fixed subset after each epoch, in
    `logs[name]`, and the check for catastrophic overfitting.

    Fast adversarial training (few attack steps) can collapse within an
    epoch: the model learns to defeat its training attack while accuracy
    under a stronger PGD drops to near zero (Wong et al., "Fast is better
    than free", 2020). The check flags an epoch whose accuracy falls more
    than `collapse_drop` below the best so far.

    Args:
      x, y: the subset (a validation subset, so that test data stay unseen).
      attack: a `deadwood_tf.attacks.Attack`, e.g. PGD-10.
      name: the key written into `logs`.
      classifier: the model attacked; default the fitted model's `student`
        (DeadwoodModel) or `model` (AdversarialTraining), else the fitted model.
      collapse_drop: a fall (absolute, in [0, 1]) below the best accuracy so
        far that counts as catastrophic overfitting: a warning, and
        `logs["catastrophic_overfitting"] = 1.0` from that epoch on. None: no check.
      stop_on_collapse: also stop the fit at the flagged epoch.

    Attributes:
      history: the accuracy after each epoch of the fit.
      collapsed_epoch: the first flagged epoch (1-based), or None.
    """

    def __init__(self, x, y, attack, name="val_pgd_accuracy", classifier=None,
                 collapse_drop=0.2, stop_on_collapse=False):
        super().__init__()
        if collapse_drop is not None and not 0.0 < collapse_drop <= 1.0:
            raise ValueError("Invalid value for argument `collapse_drop`: expected a fraction "
                             f"in (0, 1] or None. Received: collapse_drop={collapse_drop!r}")
        self.x, self.y, self.attack, self.name = x, y, attack, name
        self.classifier = classifier
        self.collapse_drop, self.stop_on_collapse = collapse_drop, stop_on_collapse
        self.history, self.collapsed_epoch = [], None

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not len(self.x):
            return
        model = self.classifier or _classifier(self.model)
        accuracy = attacks_lib.evaluate_robustness(model, self.x, self.y,
                                                   [self.attack])[self.attack.name]
        logs[self.name] = accuracy
        best = max(self.history, default=accuracy)
        self.history.append(float(accuracy))
        if self.collapse_drop is None:
            return
        if self.collapsed_epoch is None and accuracy < best - self.collapse_drop:
            self.collapsed_epoch = epoch + 1
            logging.warning(
                "deadwood_tf: catastrophic overfitting at epoch %d: %s %.4f fell more than "
                "%.2f below its best %.4f", epoch + 1, self.name, accuracy, self.collapse_drop,
                best)
            if self.stop_on_collapse:
                self.model.stop_training = True
        logs["catastrophic_overfitting"] = float(self.collapsed_epoch is not None)


def _duration(seconds):
    seconds = int(round(seconds))
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress(keras.callbacks.Callback):
    """Lines a long fit prints: epoch, images per second and the ETA.

    One line at each epoch end, and within an epoch at most every
    `every_seconds`, e.g.
    `[dense_at] epoch 3/10, batch 120/352: 98.1 images/s; epoch ETA 3m57s, fit ETA 55m12s`.
    The rate is measured over this fit (its first batch, which traces the
    step, left out), so a resumed fit (`initial_epoch`) gives a true ETA.

    Args:
      num_examples: images per epoch.
      batch_size: images per batch (the last batch may be smaller).
      title: a tag that starts each line.
      every_seconds: the most time between lines within an epoch (0: only at
        epoch ends).
      print_fn: where the lines go.
    """

    def __init__(self, num_examples, batch_size, title="", every_seconds=60.0, print_fn=None):
        super().__init__()
        if num_examples <= 0 or batch_size <= 0:
            raise ValueError("Invalid values for arguments `num_examples`, `batch_size`: "
                             f"expected ints > 0. Received: num_examples={num_examples!r}, "
                             f"batch_size={batch_size!r}")
        self.num_examples, self.batch_size = int(num_examples), int(batch_size)
        self.title, self.every_seconds = title, float(every_seconds)
        self.print_fn = print_fn or (lambda line: print(line, flush=True))

    def _steps(self):
        return self.params.get("steps") or math.ceil(self.num_examples / self.batch_size)

    def _images(self, steps_done):
        """Images in the first `steps_done` batches of an epoch."""
        return min(steps_done * self.batch_size, self.num_examples)

    def on_train_begin(self, logs=None):
        self.epochs = self.params.get("epochs", 1)
        self.timed_images, self.timed_seconds = 0, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.epoch_start = epoch, time.time()
        self.last_line, self.clock, self.clock_step = self.epoch_start, None, 0

    def on_train_batch_end(self, batch, logs=None):
        now = time.time()
        if self.clock is None:  # after the first batch: tracing time is not the rate
            self.clock, self.clock_step = now, batch + 1
            return
        if self.every_seconds and now - self.last_line >= self.every_seconds:
            self.last_line = now
            self.print_fn(self._line(batch + 1, now))

    def _rate(self, steps_done, now):
        """Images per second over this fit's timed batches (None before any)."""
        images = self.timed_images + self._images(steps_done) - self._images(self.clock_step)
        seconds = self.timed_seconds + (now - self.clock if self.clock else 0.0)
        return images / seconds if seconds > 0 and images > 0 else None

    def _line(self, steps_done, now):
        steps = self._steps()
        rate = self._rate(steps_done, now)
        where = f"epoch {self.epoch + 1}/{self.epochs}"
        if steps_done < steps:
            where += f", batch {steps_done}/{steps}"
        head = f"[{self.title}] " if self.title else ""
        if rate is None:
            return f"{head}{where}"
        left = self.num_examples - self._images(steps_done)
        fit_left = left + self.num_examples * (self.epochs - self.epoch - 1)
        epoch_eta = f"epoch ETA {_duration(left / rate)}, " if left else ""
        fit_eta = f"fit ETA {_duration(fit_left / rate)}" if fit_left else "fit done"
        return f"{head}{where}: {rate:.1f} images/s; {epoch_eta}{fit_eta}"

    def on_epoch_end(self, epoch, logs=None):
        now, steps = time.time(), self._steps()
        line = self._line(steps, now)
        if self.clock is not None:
            self.timed_images += self._images(steps) - self._images(self.clock_step)
            self.timed_seconds += now - self.clock
        self.print_fn(f"{line} ({_duration(now - self.epoch_start)} this epoch)")
