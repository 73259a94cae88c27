import csv
import logging

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot

import deadwood_tf as dw
from conftest import small_cnn, train


def make(teacher, **kwargs):
    kwargs.setdefault("attack", dw.FGSM(0.1))
    model = dw.DeadwoodModel(dw.prune_model(teacher), teacher, **kwargs)
    model.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    return model


def masks_of(model):
    return [np.asarray(m.numpy()) for _, m in dw.pruned_weights(model)]


def test_fit_on_arrays_keeps_one_multiplier_per_example(teacher, digits):
    x, y = digits[0][:320], digits[1][:320]
    model = make(teacher, robustness_bound=0.05)
    history = model.fit(x, y, epochs=2, batch_size=64, verbose=0,
                        callbacks=[dw.DeadwoodCallback(0.5, prune_epoch=2, dual_step_size=1.0,
                                                       schedule="one_shot")])
    assert model.num_examples == 320
    mu = model.robustness_multipliers.numpy()
    assert mu.shape == (320,) and len(np.unique(mu)) > 100  # examples differ
    np.testing.assert_array_equal(model.violation_counts.numpy(), np.ones(320))
    # The dual step raised each multiplier by exactly its example's last-epoch violation.
    violations = model.robustness_violations.numpy()
    assert np.all(mu >= 1.0) and np.any(violations > 0)
    logs = history.history
    for key in ("loss", "accuracy", "adv_accuracy", "fidelity_violation", "robustness_violation",
                "l1", "sparsity", "fidelity_multiplier_mean", "fidelity_multiplier_max",
                "robustness_multiplier_mean", "robustness_multiplier_max"):
        assert key in logs, key
    assert logs["sparsity"] == [0.0, pytest.approx(0.5, abs=1e-5)]
    assert logs["robustness_multiplier_max"][-1] == pytest.approx(float(mu.max()))


def test_dual_step_is_the_clipped_subgradient_step(teacher):
    model = make(teacher, num_examples=4, initial_multiplier=1.0)
    model.fidelity_violations.assign([0.0, 2.0, 30.0, 1.0])
    model.robustness_violations.assign([1.0, 0.0, 0.0, 4.0])
    model.violation_counts.assign([1.0, 1.0, 1.0, 2.0])
    model.dual_step(0.5, 0.25, max_multiplier=5.0)
    np.testing.assert_allclose(model.fidelity_multipliers.numpy(), [1.0, 2.0, 5.0, 1.25])
    np.testing.assert_allclose(model.robustness_multipliers.numpy(), [1.25, 1.0, 1.0, 1.5])


def test_hard_examples_get_larger_multipliers(teacher, digits):
    x, y = digits[0][:256].copy(), digits[1][:256].copy()
    y[:32] = (y[:32] + 1) % 10  # mislabelled: cannot satisfy the label-based constraint
    model = make(teacher, robust_target="label", robustness_bound=0.3, sparsity_weight=0.0)
    model.fit(x, y, epochs=2, batch_size=64, verbose=0,
              callbacks=[dw.DeadwoodCallback(0.1, prune_epoch=2, dual_step_size=0.5)])
    mu = model.robustness_multipliers.numpy()
    assert mu[:32].mean() > mu[32:].mean() + 0.5


def test_tf_data_with_indices_and_without(teacher, digits, caplog):
    x, y = digits[0][:256], digits[1][:256]
    indexed = tf.data.Dataset.from_tensor_slices((x, y, np.arange(256))).shuffle(256).batch(64)
    with pytest.raises(ValueError, match="num_examples"):
        make(teacher).fit(indexed, epochs=1, verbose=0)
    model = make(teacher, num_examples=256, robustness_bound=0.0)
    model.fit(indexed, epochs=1, verbose=0, callbacks=[dw.DeadwoodCallback(0.3, prune_epoch=1)])
    np.testing.assert_array_equal(model.violation_counts.numpy(), np.ones(256))
    assert len(np.unique(model.robustness_multipliers.numpy())) > 50

    plain = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    scalar = make(teacher)
    with caplog.at_level(logging.WARNING):
        scalar.fit(plain, epochs=2, verbose=0, callbacks=[dw.DeadwoodCallback(0.3, prune_epoch=1)])
    assert scalar.robustness_multipliers.shape == (1,)
    assert scalar.violation_counts.numpy()[0] == 256
    assert sum("one multiplier per constraint" in r.getMessage() for r in caplog.records) == 1


def test_gradual_pruning_with_tfmot_schedules(teacher, digits):
    x, y = digits[0][:256], digits[1][:256]
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=8, frequency=2)
    model = make(teacher)
    seen = []
    probe = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append(dw.sparsity_report(model).sparsity))
    model.fit(x, y, epochs=3, batch_size=64, verbose=0,
              callbacks=[dw.DeadwoodCallback(0.8, schedule=schedule), probe])
    assert seen[0] == 0.0 and 0.0 < seen[3] < 0.8
    assert seen == sorted(seen) and seen[-1] == pytest.approx(0.8, abs=1e-5)

    by_epoch = make(teacher)
    epochs = by_epoch.fit(x, y, epochs=3, batch_size=64, verbose=0, callbacks=[dw.DeadwoodCallback(
        0.9, schedule=tfmot.sparsity.keras.PolynomialDecay(0.0, 0.9, 1, 3, frequency=1),
        schedule_unit="epoch")]).history["sparsity"]
    assert epochs[0] == pytest.approx(0.0, abs=1e-6) or epochs[0] > 0
    assert epochs[0] < epochs[1] < epochs[2] == pytest.approx(0.9, abs=1e-5)

    const = make(teacher)
    const.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[dw.DeadwoodCallback(
        0.6, schedule=tfmot.sparsity.keras.ConstantSparsity(0.6, begin_step=2, frequency=100))])
    assert dw.sparsity_report(const).sparsity == pytest.approx(0.6, abs=1e-5)
    with pytest.raises(ValueError, match="ends at sparsity 0.6"):
        dw.DeadwoodCallback(0.9, schedule=tfmot.sparsity.keras.ConstantSparsity(0.6, 0))


def test_layer_scope_and_min_keep(teacher, digits):
    x, y = digits[0][:128], digits[1][:128]
    model = make(teacher)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0,
              callbacks=[dw.DeadwoodCallback(0.9, prune_epoch=0, scope="layer")])
    assert all(abs(w.sparsity - 0.9) < 0.01 for w in dw.sparsity_report(model).weights)
    guarded = make(teacher)
    guarded.fit(x, y, epochs=1, batch_size=64, verbose=0,
                callbacks=[dw.DeadwoodCallback(0.99, prune_epoch=0, min_keep=50)])
    report = dw.sparsity_report(guarded)
    assert all(w.size - w.zeros >= 50 for w in report.weights)
    assert report.zeros == round(0.99 * report.size)


def test_masked_weights_stay_zero_and_evaluate_matches_the_student(teacher, digits):
    x, y, xt, yt = digits
    model = make(teacher, attack=dw.PGD(0.1, steps=3))
    model.fit(x[:256], y[:256], epochs=3, batch_size=64, verbose=0,
              callbacks=[dw.DeadwoodCallback(0.9, prune_epoch=1)])
    for weight, mask in dw.pruned_weights(model):
        assert np.all(np.asarray(weight.numpy())[np.asarray(mask.numpy()) == 0] == 0)
    assert dw.sparsity_report(model).zeros == round(0.9 * model.num_prunable)
    got = model.evaluate(xt, yt, verbose=0, return_dict=True)
    assert set(got) == {"loss", "accuracy"}
    assert got["accuracy"] == pytest.approx(np.mean(model.student.predict(xt, verbose=0).argmax(1) == yt))
    np.testing.assert_allclose(model.predict(xt[:8], verbose=0), model.student(xt[:8]), atol=1e-6)


def test_teacher_with_softmax_output(digits):
    keras.utils.set_random_seed(3)
    x, y, xt, yt = digits
    probs = train(small_cnn(softmax=True), x, y, epochs=6, from_logits=False)
    model = make(probs, attack=dw.PGD(0.1, steps=3))
    hist = model.fit(x[:256], y[:256], epochs=2, batch_size=64, verbose=0,
                     callbacks=[dw.DeadwoodCallback(0.5, prune_epoch=1)])
    assert np.isfinite(hist.history["loss"]).all()
    assert hist.history["fidelity_violation"][0] < 0.1  # teacher and student agree at first
    assert model.evaluate(xt, yt, verbose=0, return_dict=True)["accuracy"] > 0.8


def test_save_and_load_bring_back_masks_and_multipliers_exactly(teacher, digits, tmp_path):
    x, y = digits[0][:192], digits[1][:192]
    model = make(teacher)
    model.fit(x, y, epochs=2, batch_size=64, verbose=0,
              callbacks=[dw.DeadwoodCallback(0.7, prune_epoch=1)])
    path = tmp_path / "dw.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert isinstance(loaded, dw.DeadwoodModel) and loaded.num_examples == 192
    for name in ("fidelity_multipliers", "robustness_multipliers", "robustness_violations"):
        np.testing.assert_array_equal(getattr(loaded, name).numpy(), getattr(model, name).numpy())
    assert len(masks_of(loaded)) == len(masks_of(model)) == 4
    for a, b in zip(masks_of(loaded), masks_of(model)):
        np.testing.assert_array_equal(a, b)
    assert 0 < np.mean([np.mean(m == 0) for m in masks_of(loaded)]) < 1
    np.testing.assert_array_equal(loaded.predict(x[:16], verbose=0), model.predict(x[:16], verbose=0))
    assert loaded.attack.get_config() == model.attack.get_config()
    # Training goes on from the loaded state.
    loaded.fit(x, y, epochs=1, batch_size=64, verbose=0,
               callbacks=[dw.DeadwoodCallback(0.7, prune_epoch=0)])
    assert dw.sparsity_report(loaded).sparsity == pytest.approx(0.7, abs=1e-5)


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.state = {
                "masks": masks_of(self.model),
                "mu": self.model.robustness_multipliers.numpy().copy(),
                "iterations": int(self.model.optimizer.iterations.numpy()),
            }
            raise RuntimeError("interrupted")


def test_backup_and_restore_resumes_with_masks_multipliers_and_optimizer(teacher, digits, tmp_path):
    x, y = digits[0][:192], digits[1][:192]
    backup = str(tmp_path / "backup")
    model = make(teacher)
    stop = _Interrupt(epoch=2)
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(x, y, epochs=4, batch_size=64, verbose=0, callbacks=[
            dw.DeadwoodCallback(0.8, prune_epoch=1), keras.callbacks.BackupAndRestore(backup), stop])

    fresh = make(teacher)  # a new process would rebuild the same objects
    restored = {}

    def grab(epoch, logs):
        if "mu" not in restored:
            restored["mu"] = fresh.robustness_multipliers.numpy().copy()
            restored["masks"] = masks_of(fresh)
            restored["iterations"] = int(fresh.optimizer.iterations.numpy())
            restored["epoch"] = epoch

    fresh.fit(x, y, epochs=4, batch_size=64, verbose=0, callbacks=[
        dw.DeadwoodCallback(0.8, prune_epoch=1), keras.callbacks.BackupAndRestore(backup),
        keras.callbacks.LambdaCallback(on_epoch_begin=grab)])
    # BackupAndRestore saved at the end of epoch index 2, just before the interrupt:
    # the resumed run starts at epoch 3 with exactly that state.
    assert restored["epoch"] == 3
    assert restored["iterations"] == stop.state["iterations"] == 3 * 3
    np.testing.assert_array_equal(restored["mu"], stop.state["mu"])
    assert not np.all(restored["mu"] == 1.0)
    for a, b in zip(restored["masks"], stop.state["masks"]):
        np.testing.assert_array_equal(a, b)
    assert dw.sparsity_report(fresh).sparsity == pytest.approx(0.8, abs=1e-5)


def test_csv_logger_records_the_callback_figures(teacher, digits, tmp_path):
    x, y = digits[0][:128], digits[1][:128]
    path = tmp_path / "log.csv"
    make(teacher).fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[
        dw.DeadwoodCallback(0.5, prune_epoch=1), keras.callbacks.CSVLogger(str(path))])
    rows = list(csv.DictReader(open(path)))
    assert float(rows[1]["sparsity"]) == pytest.approx(0.5, abs=1e-5)
    assert "robustness_multiplier_mean" in rows[0] and "robustness_violation" in rows[0]


def test_callback_on_a_plain_pruned_model_makes_the_cuts_only(teacher, digits):
    # Gradual magnitude pruning: the same cuts, no dual step; masked weights stay
    # zero through the epochs after each cut (the compiled step sees the new masks).
    x, y = digits[0][:128], digits[1][:128]
    plain = dw.prune_model(teacher)
    plain.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = plain.fit(x, y, epochs=3, batch_size=64, verbose=0,
                        callbacks=[dw.DeadwoodCallback(0.6, prune_epoch=2, verbose=0)])
    assert history.history["sparsity"][0] == pytest.approx(0.6 * (1 - 0.5**3), abs=1e-3)
    assert history.history["sparsity"][1:] == [pytest.approx(0.6, abs=1e-4)] * 2
    assert "fidelity_multiplier_mean" not in history.history
    for weight, mask in dw.pruned_weights(plain):
        assert np.all(weight.numpy()[mask.numpy() == 0] == 0)


def test_bad_arguments_get_clear_errors_and_change_nothing(teacher, digits):
    x, y = digits[0][:64], digits[1][:64]
    student = dw.prune_model(teacher)
    with pytest.raises(TypeError, match="`attack`"):
        dw.DeadwoodModel(student, teacher)
    with pytest.raises(ValueError, match="carries no pruning masks"):
        dw.DeadwoodModel(teacher, teacher, attack=None)
    other = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(5)])
    with pytest.raises(ValueError, match=r"same output shape.*\(10,\).*\(5,\)"):
        dw.DeadwoodModel(student, other, attack=None)
    for kwargs, match in [({"fidelity_bound": -1}, "`fidelity_bound`"),
                          ({"temperature": 0}, "`temperature`"),
                          ({"robust_target": "x"}, "`robust_target`"),
                          ({"attack": "pgd"}, "`attack`"),
                          ({"num_examples": 0}, "`num_examples`")]:
        with pytest.raises(ValueError, match=match):
            dw.DeadwoodModel(student, teacher, **{"attack": None, **kwargs})
    model = make(teacher)
    bad = y.copy()
    bad[3] = 10
    with pytest.raises(ValueError, match=r"`y`.*\[0, 10\).*10"):
        model.fit(x, bad, epochs=1, verbose=0)
    assert model.num_examples is None  # nothing created by the failed call
    with pytest.raises(ValueError, match="`target_sparsity`.*Received: target_sparsity=1.0"):
        dw.DeadwoodCallback(1.0)
    with pytest.raises(ValueError, match="`dual_step_size`"):
        dw.DeadwoodCallback(0.5, dual_step_size=-1)
    with pytest.raises(ValueError, match="`prune_epoch`"):
        dw.DeadwoodCallback(0.5, prune_epoch=-2)
    with pytest.raises(ValueError, match="DeadwoodModel or of a model from deadwood_tf.prune_model"):
        dense = keras.models.clone_model(teacher)
        dense.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        dense.fit(x, y, verbose=0, callbacks=[dw.DeadwoodCallback(0.5)])
    model.fit(x, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="keeps multipliers for 64 examples"):
        model.fit(x[:32], y[:32], epochs=1, verbose=0)
    tf_bad = tf.data.Dataset.from_tensor_slices((x, bad)).batch(64)
    with pytest.raises(ValueError, match=r"1 labels outside \[0, 10\)"):
        make(teacher).fit(tf_bad, epochs=1, verbose=0)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["eager_graph", "xla"])
def test_out_of_range_indices_and_labels_never_pass_silently(jit_compile, teacher, digits):
    # Under XLA tf.debugging asserts compile to nothing: a probe lost 10 of 64
    # examples' violations without a word. The step counts them instead.
    x, y = digits[0][:64], digits[1][:64]
    ds = tf.data.Dataset.from_tensor_slices((x, y, np.arange(64) + 10)).batch(32)
    model = make(teacher, num_examples=64)
    model.compile(keras.optimizers.Adam(1e-3), jit_compile=jit_compile)
    with pytest.raises(ValueError, match=r"10 example indices outside \[0, num_examples=64\)"):
        model.fit(ds, epochs=1, verbose=0)
    # Examples out of range were left out of the step: no violation landed on slot 0.
    assert model.violation_counts.numpy()[0] == 0
    assert model.violation_counts.numpy().sum() == 54  # 32 + 22 in range, 10 not
    bad = y.copy()
    bad[[3, 40]] = [10, -1]
    model = make(teacher)
    model.compile(keras.optimizers.Adam(1e-3), jit_compile=jit_compile)
    labelled = tf.data.Dataset.from_tensor_slices((x, bad)).batch(32)
    with pytest.raises(ValueError, match=r"1 labels outside \[0, 10\)"):
        model.fit(labelled, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"labels outside \[0, 10\)"):
        model.evaluate(labelled, verbose=0)
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(32), epochs=1, verbose=0)


def test_finetune_sparsity_weight_takes_over_after_the_final_cut(teacher, digits):
    x, y = digits[0][:128], digits[1][:128]
    # Bounds no example violates: the Lagrangian is the L1 term alone.
    model = make(teacher, sparsity_weight=50.0, fidelity_bound=100.0, robustness_bound=100.0)
    seen = []
    probe = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(float(model.sparsity_weight_variable.numpy())))
    hist = model.fit(x, y, epochs=3, batch_size=64, verbose=0, callbacks=[
        dw.DeadwoodCallback(0.5, prune_epoch=2, finetune_sparsity_weight=0.0), probe])
    assert seen == [50.0, 0.0, 0.0]
    assert hist.history["loss"][0] == pytest.approx(50.0 * hist.history["l1"][0], rel=1e-5)
    assert hist.history["loss"][2] == 0.0
    with pytest.raises(ValueError, match="`finetune_sparsity_weight`"):
        dw.DeadwoodCallback(0.5, finetune_sparsity_weight=-1)


def test_finetune_sparsity_weight_after_a_scheduled_cut(teacher, digits):
    x, y = digits[0][:128], digits[1][:128]
    model = make(teacher)
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=2,
                                                    frequency=1)
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[dw.DeadwoodCallback(
        0.9, schedule=schedule, schedule_unit="epoch", finetune_sparsity_weight=0.0)])
    assert float(model.sparsity_weight_variable.numpy()) == 0.0


def test_siamese_model_with_two_image_inputs_trains_with_pgd(digits):
    # Each example: two digits; the label is the left one's. One shared encoder.
    x, y = digits[0][:256], digits[1][:256]
    pairs = {"left": x, "right": x[::-1].copy()}
    left, right = keras.Input((8, 8, 1), name="left"), keras.Input((8, 8, 1), name="right")
    encoder = keras.Sequential([keras.layers.Conv2D(8, 3, activation="relu"),
                                keras.layers.Flatten(), keras.layers.Dense(32, activation="relu")])
    keras.utils.set_random_seed(3)
    teacher = keras.Model({"left": left, "right": right}, keras.layers.Dense(10)(
        keras.layers.Concatenate()([encoder(left), encoder(right)])))
    train(teacher, pairs, y, epochs=8)
    model = make(teacher, attack=dw.PGD(0.1, steps=2))
    history = model.fit(pairs, y, epochs=2, batch_size=64, verbose=0,
                        callbacks=[dw.DeadwoodCallback(0.5, prune_epoch=1)])
    assert np.all(np.isfinite(history.history["loss"]))
    assert model.num_examples == 256 and model.violation_counts.numpy().min() == 1
    assert dw.sparsity_report(model.student).sparsity == pytest.approx(0.5, abs=1e-3)
    result = dw.evaluate_robustness(model.student, pairs, y, [dw.PGD(0.1, steps=5)])
    assert result["clean"] > 0.5 and result["pgd5_linf_0.1"] < result["clean"]


@pytest.mark.parametrize("batch_norm, updates", [("joint", 1), ("separate", 2)])
def test_batch_norm_sees_clean_and_adversarial_inputs_jointly_or_separately(
        batch_norm, updates, digits):
    # eps = 0: the adversarial batch equals the clean one, so the input batch
    # norm's moving mean after one step tells how many updates it got.
    x, y = digits[0][:32], digits[1][:32]
    teacher = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.BatchNormalization(name="bn"),
                                keras.layers.Flatten(), keras.layers.Dense(10)])
    model = make(teacher, attack=dw.FGSM(0.0), batch_norm=batch_norm)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    moving_mean = model.student.get_layer("bn").moving_mean.numpy()
    expected = (1 - 0.99**updates) * x.mean((0, 1, 2))
    np.testing.assert_allclose(moving_mean, expected, rtol=1e-4)
    back = dw.DeadwoodModel.from_config(model.get_config())
    assert back.batch_norm == batch_norm
    with pytest.raises(ValueError, match=r"`batch_norm`.*Received: batch_norm='both'"):
        dw.DeadwoodModel(dw.prune_model(teacher), teacher, attack=None, batch_norm="both")
