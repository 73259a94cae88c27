"""The schedules DeadwoodCallback asks: recognised by type, answering by epoch or step."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

import deadwood_tf as dw
from deadwood_tf import pruning_schedule
from deadwood_tf.pruning_schedule import Cubic, OneShot, Tfmot


def fractions(schedule, epochs):
    answers = [schedule.at_epoch_end(e, epochs) for e in range(1, epochs + 1)]
    return [None if a is None else a.fraction for a in answers]


def test_cubic_reaches_the_target_exactly_at_the_last_solve_epoch():
    schedule = Cubic(0.9, epochs=3)
    expected = [0.9 * (1 - (1 - e / 3) ** 3) for e in (1, 2)] + [0.9, None, None, None]
    assert fractions(schedule, 6) == expected  # exact: the same float arithmetic
    assert fractions(Cubic(0.9, epochs=2, power=1), 4) == [0.45, 0.9, None, None]
    assert schedule.at_train_begin(6) is None and schedule.at_step(5) is None
    # Without `epochs`: half of fit's epochs.
    assert fractions(Cubic(0.8), 4)[1:] == [0.8, None, None]


def test_one_shot_cuts_once_and_zero_epochs_means_before_training():
    assert fractions(OneShot(0.7, epochs=2), 4) == [None, 0.7, None, None]
    before = OneShot(0.7, epochs=0)
    cut = before.at_train_begin(4)
    assert (cut.fraction, cut.when) == (0.7, "one-shot (before training)")
    assert fractions(before, 4) == [None] * 4
    assert Cubic(0.7, epochs=0).at_train_begin(4).fraction == 0.7


def test_tfmot_schedules_are_recognised_by_type_and_asked_by_step_or_epoch():
    decay = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=8, frequency=2)
    assert pruning_schedule.tfmot_final_sparsity(decay) == pytest.approx(0.8)
    constant = tfmot.sparsity.keras.ConstantSparsity(0.6, begin_step=2, frequency=100)
    assert pruning_schedule.tfmot_final_sparsity(constant) == pytest.approx(0.6)
    by_step = pruning_schedule.get(decay, 0.8)
    assert isinstance(by_step, Tfmot) and by_step.asks_each_step
    assert by_step.at_step(1) is None  # frequency 2: odd steps do not prune
    assert by_step.at_step(8).fraction == pytest.approx(0.8)
    assert by_step.at_epoch_end(1, 3) is None
    by_epoch = pruning_schedule.get(decay, 0.8, unit="epoch")
    assert not by_epoch.asks_each_step and by_epoch.at_step(8) is None
    assert by_epoch.at_epoch_end(8, 9).fraction == pytest.approx(0.8)
    with pytest.raises(ValueError, match="ends at sparsity 0.6"):
        pruning_schedule.get(constant, 0.9)


def test_an_object_shaped_like_a_tfmot_schedule_is_not_taken_for_one():
    class LooksLikeOne:  # has the attribute, not the type
        final_sparsity = 0.3

        def __call__(self, step):
            return True, 0.5

    assert pruning_schedule.tfmot_final_sparsity(LooksLikeOne()) is None
    schedule = pruning_schedule.get(LooksLikeOne(), 0.5)  # a callable: no target to check
    assert isinstance(schedule, Tfmot) and schedule.at_step(3).fraction == 0.5


def test_names_and_bad_values():
    assert isinstance(pruning_schedule.get("gradual", 0.5), Cubic)
    assert isinstance(pruning_schedule.get("one_shot", 0.5), OneShot)
    assert isinstance(pruning_schedule.get(None, 0.5), OneShot)
    own = OneShot(0.5, epochs=1)
    assert pruning_schedule.get(own, 0.5) is own
    with pytest.raises(ValueError, match="ends at 0.5"):
        pruning_schedule.get(own, 0.9)
    with pytest.raises(ValueError, match=r"`schedule`.*'linear'"):
        pruning_schedule.get("linear", 0.5)
    with pytest.raises(ValueError, match=r"`schedule`.*Received: schedule=3"):
        pruning_schedule.get(3, 0.5)
    with pytest.raises(ValueError, match="`schedule_unit`"):
        pruning_schedule.get(lambda step: (True, 0.5), 0.5, unit="batch")


def test_the_callback_asks_its_schedule_then_cuts():
    class Halves(pruning_schedule.PruningSchedule):
        target = 0.5

        def at_epoch_end(self, completed, epochs):
            return pruning_schedule.Cut(0.25 * completed, f"halves {completed}")

    model = dw.prune_model(keras.Sequential([keras.Input((6,)), keras.layers.Dense(8),
                                             keras.layers.Dense(3)]))
    model.compile("sgd", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
    y = np.arange(32) % 3
    history = model.fit(x, y, epochs=2, verbose=0,
                        callbacks=[dw.DeadwoodCallback(0.5, schedule=Halves(), verbose=0)])
    assert history.history["sparsity"] == [pytest.approx(0.25, abs=0.01),
                                           pytest.approx(0.5, abs=0.01)]


def test_deadwood_model_pattern_is_now_sparsity_term_with_a_warning(teacher):
    student = dw.prune_model(teacher)
    with pytest.warns(DeprecationWarning, match="sparsity_term"):
        old = dw.DeadwoodModel(student, teacher, attack=None, pattern=None)
    assert old.sparsity_term == "l1"
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        new = dw.DeadwoodModel(student, teacher, attack=None)
    assert new.get_config()["sparsity_term"] == "l1" and "pattern" not in new.get_config()
    # A config saved before the rename loads as the same model, without a warning.
    config = new.get_config()
    del config["sparsity_term"]
    config["pattern"] = None
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        again = dw.DeadwoodModel.from_config(config)
    assert again.sparsity_term == "l1"
    with pytest.raises(ValueError, match="disagree"), pytest.warns(DeprecationWarning):
        dw.DeadwoodModel(student, teacher, attack=None, sparsity_term="group_lasso",
                         pattern=None)
    with pytest.raises(ValueError, match=r"`pattern`.*Received: pattern='block'"):
        dw.DeadwoodModel(student, teacher, attack=None, pattern="block")
