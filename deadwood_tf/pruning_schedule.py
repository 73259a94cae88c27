"""When the cut happens and how far it goes: the schedules `DeadwoodCallback` asks.

A schedule answers at three points of a `fit`: before training, before each
batch (with the optimizer's step count) and after each epoch (with the number
of completed epochs). Each answer is a `Cut` (the fraction to cut to, and a
few words for the progress line) or None. The callback asks, then cuts; it
never looks inside a schedule. Three kinds, recognised by their type:

- `OneShot`: one cut to the target after epoch `epoch` (the paper's form);
- `Cubic`: a global cut at the end of each of the first `epochs` epochs,
  `s_e = target * (1 - (1 - e / epochs) ** power)` (the benchmark's
  headline configuration);
- `Tfmot`: the adapter of a tfmot `PruningSchedule` (`PolynomialDecay`,
  `ConstantSparsity`) or of any callable `step -> (should_prune, sparsity)`.

>>> schedule = Cubic(0.9, epochs=3)
>>> [round(schedule.at_epoch_end(e, 6).fraction, 4) for e in (1, 2, 3)]
[0.6333, 0.8667, 0.9]
>>> schedule.at_epoch_end(4, 6) is None   # fine-tuning: no cut
True
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import tensorflow as tf

# The names `DeadwoodCallback(schedule=)` takes: "gradual" (`Cubic`, the default)
# or "one_shot" (`OneShot`); None is kept as "one_shot".
NAMES = ("gradual", "one_shot")
UNITS = ("step", "epoch")
_TFMOT_SCHEDULES = "tensorflow_model_optimization.python.core.sparsity.keras.pruning_schedule"


@dataclasses.dataclass(frozen=True)
class Cut:
    """A cut to `fraction` of the target's unit; `when` describes it for a log line."""

    fraction: float
    when: str


class PruningSchedule:
    """Base of the schedules: every answer is None (no cut) unless overridden.

    `target`: the fraction the schedule ends at. `asks_each_step`: whether
    `at_step` may answer (the callback then reads the step count before each
    batch, which costs a device sync).
    """

    target: float
    asks_each_step: bool = False

    def at_train_begin(self, epochs: int) -> Cut | None:
        """Before the first batch; `epochs`: the epochs of this `fit`."""
        return None

    def at_step(self, step: int) -> Cut | None:
        """Before each batch; `step`: the optimizer's step count."""
        return None

    def at_epoch_end(self, completed: int, epochs: int) -> Cut | None:
        """After each epoch; `completed`: the epochs done so far (1 after the first)."""
        return None


class _ByEpoch(PruningSchedule):
    """The built-in schedules: cuts at epoch ends, over a solve phase of `epochs`
    epochs (None: half of `fit`'s); with 0, one cut to the target before training."""

    def __init__(self, target: float, epochs: int | None = None):
        self.target = float(target)
        self.epochs = epochs

    def solve_epochs(self, fit_epochs) -> int:
        if self.epochs is not None:
            return self.epochs
        return max(int(fit_epochs or 0) // 2, 0)

    def at_train_begin(self, epochs):
        if self.solve_epochs(epochs) == 0:
            # Idempotent: masked weights score lowest, so a resumed run re-cuts the same mask.
            return Cut(self.target, "one-shot (before training)")
        return None


class OneShot(_ByEpoch):
    """One cut to `target` at the end of epoch `epochs` (None: half of `fit`'s)."""

    def at_epoch_end(self, completed, epochs):
        if completed == self.solve_epochs(epochs):
            return Cut(self.target, f"one-shot (after epoch {completed})")
        return None


class Cubic(_ByEpoch):
    """A cut at the end of each of the first `epochs` epochs (None: half of
    `fit`'s), to `target * (1 - (1 - e / epochs) ** power)`, exactly `target` at
    the last of them."""

    def __init__(self, target: float, epochs: int | None = None, power: float = 3):
        super().__init__(target, epochs)
        self.power = power

    def at_epoch_end(self, completed, epochs):
        solve = self.solve_epochs(epochs)
        if completed > solve:
            return None
        # Exactly the target at the last solve epoch (no float round-off).
        fraction = self.target if completed == solve else \
            self.target * (1.0 - (1.0 - completed / solve) ** self.power)
        return Cut(fraction, f"gradual (after epoch {completed} of {solve})")


class Tfmot(PruningSchedule):
    """A tfmot `PruningSchedule`, or any callable `step -> (should_prune, sparsity)`,
    asked before each batch with the optimizer's step count (`unit="step"`,
    tfmot's convention) or after each epoch with the completed epochs
    (`unit="epoch"`).

    `target`: the fraction it ends at. tfmot's `PolynomialDecay` and
    `ConstantSparsity` say theirs: a different `target` raises ValueError.
    """

    def __init__(self, schedule, target: float, unit: str = "step"):
        if not callable(schedule):
            raise ValueError(
                "Invalid value for argument `schedule`: expected a tfmot PruningSchedule "
                f"or a callable step -> (should_prune, sparsity). Received: schedule={schedule!r}")
        if unit not in UNITS:
            raise ValueError(f"Invalid value for argument `schedule_unit`: expected one of "
                             f"{UNITS}. Received: schedule_unit={unit!r}")
        final = tfmot_final_sparsity(schedule)
        if final is not None and abs(final - target) > 1e-9:
            raise ValueError(
                "Invalid values for arguments `target_sparsity`, `schedule`: the schedule "
                f"ends at sparsity {final}. Received: target_sparsity={target}")
        self.schedule, self.target, self.unit = schedule, float(target), unit
        self.asks_each_step = unit == "step"

    def _ask(self, step):
        should, fraction = self.schedule(tf.constant(step, tf.int64))
        return bool(np.asarray(should)), float(np.asarray(fraction))

    def at_step(self, step):
        if self.unit != "step":
            return None
        should, fraction = self._ask(step)
        return Cut(fraction, "scheduled") if should else None

    def at_epoch_end(self, completed, epochs):
        if self.unit != "epoch":
            return None
        should, fraction = self._ask(completed)
        return Cut(fraction, f"scheduled (after epoch {completed})") if should else None


def tfmot_final_sparsity(schedule) -> float | None:
    """The sparsity a tfmot `PolynomialDecay` or `ConstantSparsity` ends at; None
    for anything else. Recognised by type: tfmot is never imported here (an
    object of its classes exists only once tfmot is)."""
    module = sys.modules.get(_TFMOT_SCHEDULES)
    if module is None:
        return None
    if isinstance(schedule, module.PolynomialDecay):
        return float(schedule.final_sparsity)
    if isinstance(schedule, module.ConstantSparsity):
        return float(schedule.target_sparsity)
    return None


def get(schedule, target: float, epochs: int | None = None, power: float = 3,
        unit: str = "step") -> PruningSchedule:
    """The schedule `DeadwoodCallback(schedule=)` means.

    Args:
      schedule: "gradual" (`Cubic`), "one_shot" or None (`OneShot`), a
        `PruningSchedule` (as it is; its `target` must be `target`), or a
        tfmot schedule or callable (`Tfmot`).
      target: the fraction the cut reaches.
      epochs: the solve phase of the named schedules (None: half of `fit`'s).
      power: `Cubic`'s exponent.
      unit: `Tfmot`'s "step" or "epoch".
    """
    if schedule is None:
        schedule = "one_shot"
    if isinstance(schedule, str):
        if schedule not in NAMES:
            raise ValueError(
                f"Invalid value for argument `schedule`: expected one of {NAMES}, a "
                f"tfmot PruningSchedule or a callable. Received: schedule={schedule!r}")
        return Cubic(target, epochs, power) if schedule == "gradual" else OneShot(target, epochs)
    if isinstance(schedule, PruningSchedule):
        if abs(schedule.target - target) > 1e-9:
            raise ValueError(
                "Invalid values for arguments `target_sparsity`, `schedule`: the schedule "
                f"ends at {schedule.target}. Received: target_sparsity={target}")
        return schedule
    return Tfmot(schedule, target, unit)
