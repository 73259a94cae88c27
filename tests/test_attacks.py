import keras
import numpy as np
import pytest
import tensorflow as tf

import deadwood_tf as dw
from conftest import small_cnn, train


@pytest.mark.parametrize("attack", [
    dw.FGSM(0.1),
    dw.PGD(0.1, steps=5, step_size=0.03),
    dw.PGD(0.1, steps=5, step_size=0.03, random_start=False),
    dw.FGSM(0.5, norm="l2"),
    dw.PGD(0.5, steps=5, step_size=0.2, norm=2),
], ids=lambda a: a.name)
def test_attacks_stay_in_the_ball_and_the_input_range_and_hurt_accuracy(attack, teacher, digits):
    x, y = digits[2][:200], digits[3][:200]
    x_adv = attack(lambda t: teacher(t, training=False), tf.constant(x), tf.constant(y)).numpy()
    delta = (x_adv - x).reshape(len(x), -1)
    norms = np.abs(delta).max(1) if attack.norm == np.inf else np.linalg.norm(delta, axis=1)
    assert norms.max() <= attack.eps + 1e-5
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    clean = np.mean(teacher(x).numpy().argmax(1) == y)
    robust = np.mean(teacher(x_adv).numpy().argmax(1) == y)
    assert robust < clean - 0.1


def test_attacks_run_inside_tf_function(teacher, digits):
    x, y = digits[2][:64], digits[3][:64]
    pgd = dw.PGD(0.1, steps=3)

    @tf.function
    def make(xb, yb):
        return pgd(lambda t: teacher(t, training=False), xb, yb)

    assert make(tf.constant(x), tf.constant(y)).shape == x.shape


def test_pgd_is_at_least_as_strong_as_fgsm(teacher, digits):
    x, y = digits[2], digits[3]
    res = dw.evaluate_robustness(teacher, x, y, [dw.FGSM(0.1), dw.PGD(0.1, 20, 0.01)])
    assert set(res) == {"clean", "fgsm_linf_0.1", "pgd20_linf_0.1"}
    assert res["clean"] > 0.9
    assert res["pgd20_linf_0.1"] <= res["fgsm_linf_0.1"] < res["clean"]


def test_softmax_models_get_their_exact_logits_back(digits):
    keras.utils.set_random_seed(2)
    x, y, xt, yt = digits
    probs = train(small_cnn(softmax=True), x, y, epochs=8, from_logits=False)
    fn = dw.attacks.logits_fn(probs)
    logits = fn(tf.constant(xt[:20])).numpy()
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), probs(xt[:20]).numpy(), atol=1e-5)
    assert np.abs(logits).max() > 1.5  # real logits, not probabilities
    # The model itself still outputs probabilities afterwards.
    np.testing.assert_allclose(probs(xt[:5]).numpy().sum(1), 1.0, atol=1e-5)
    # Attacks through a softmax model are as strong as through its logits.
    res = dw.evaluate_robustness(probs, xt, yt, [dw.PGD(0.1, 10, 0.025)])
    assert res["pgd10_linf_0.1"] < res["clean"] - 0.2

    inp = keras.Input((8, 8, 1))
    h = keras.layers.Dense(10)(keras.layers.Flatten()(inp))
    separate = keras.Model(inp, keras.layers.Softmax()(h))
    assert dw.attacks.outputs_probabilities(separate)
    out = dw.attacks.logits_fn(separate)(xt[:3]).numpy()
    np.testing.assert_allclose(tf.nn.softmax(out).numpy(), separate(xt[:3]).numpy(), atol=1e-6)


@pytest.mark.parametrize("steps", [1, 2])
def test_pgd_with_one_or_two_steps_runs_and_stays_in_the_ball(steps, teacher, digits):
    # The default step 2.5 * eps / steps exceeds eps here: cleverhans refused it.
    x, y = digits[2][:64], digits[3][:64]
    pgd = dw.PGD(0.1, steps=steps)
    assert pgd.step_size == pytest.approx(0.1)
    x_adv = pgd(lambda t: teacher(t, training=False), tf.constant(x), tf.constant(y)).numpy()
    assert np.abs(x_adv - x).max() <= 0.1 + 1e-5
    assert np.mean(teacher(x_adv).numpy().argmax(1) == y) < np.mean(teacher(x).numpy().argmax(1) == y)
    assert dw.PGD(0.1, steps=4).step_size == pytest.approx(0.0625)


@pytest.mark.parametrize("make, match", [
    (lambda: dw.PGD(0.1, steps=2, step_size=0.2), r"`step_size`.*<= eps=0.1.*step_size=0.2"),
    (lambda: dw.PGD(-0.1), "`eps`"),
    (lambda: dw.FGSM(float("nan")), "`eps`"),
    (lambda: dw.PGD(0.1, steps=0), "`steps`"),
    (lambda: dw.PGD(0.1, norm=1), "`norm`"),
    (lambda: dw.FGSM(0.1, clip_min=1.0, clip_max=0.0), "clip_min"),
])
def test_bad_attack_arguments_are_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_evaluate_robustness_checks_its_inputs(teacher, digits):
    x, y = digits[2][:10], digits[3][:9]
    with pytest.raises(ValueError, match="as many labels"):
        dw.evaluate_robustness(teacher, x, y, [])
    with pytest.raises(ValueError, match="`attacks`"):
        dw.evaluate_robustness(teacher, x, digits[3][:10], ["pgd"])
    ds = tf.data.Dataset.from_tensor_slices((digits[2][:100], digits[3][:100])).batch(32)
    from_ds = dw.evaluate_robustness(teacher, ds)
    assert from_ds["clean"] == dw.evaluate_robustness(teacher, digits[2][:100], digits[3][:100])["clean"]


def test_attacks_serialize():
    pgd = dw.PGD(0.3, steps=7, step_size=0.05, norm="l2", random_start=False)
    back = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(pgd))
    assert isinstance(back, dw.PGD) and back.get_config() == pgd.get_config()


def test_art_square_and_autoattack_evaluate_keras3_models(teacher, digits):
    x, y = digits[2][:40], digits[3][:40]
    square = dw.SquareAttack(0.1, max_queries=100)
    auto = dw.AutoAttack(0.1, apgd_steps=10, square_queries=50)
    res = dw.evaluate_robustness(teacher, x, y, [square, auto, dw.PGD(0.1, 20, 0.01)],
                                 batch_size=20)
    assert set(res) == {"clean", square.name, auto.name, "pgd20_linf_0.1"}
    assert res[square.name] < res["clean"]
    assert res[auto.name] <= res[square.name] + 0.05  # APGD + Square at least as strong
    x_adv = square(lambda t: teacher(t, training=False), x, y)
    assert np.abs(x_adv - x).max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with pytest.raises(ValueError, match="max_queries"):
        dw.SquareAttack(0.1, max_queries=0)


def test_apgd_dlr_loss_equals_arts_and_gives_the_same_attack(teacher, digits):
    from art.attacks.evasion import AutoProjectedGradientDescent
    from deadwood_tf.attacks import APGD, ARTAttack, DifferenceOfLogitsRatio

    rng = np.random.default_rng(0)
    z = rng.normal(size=(32, 10)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, 32)]
    z[:8] += 5 * y[:8]  # some examples classified correctly, some not
    apgd = APGD(0.1, steps=5, loss="dlr")
    classifier = apgd._classifier(lambda t: teacher(t, training=False), digits[2][:1])
    arts = AutoProjectedGradientDescent(classifier, eps=0.1, loss_type="difference_logits_ratio",
                                        verbose=False).estimator._loss_object
    ours = DifferenceOfLogitsRatio()
    for reduction in ("none", "mean"):
        arts.reduction = reduction
        ours.reduction = reduction if reduction == "none" else "sum_over_batch_size"
        np.testing.assert_allclose(ours(tf.constant(y), tf.constant(z)),
                                   arts(tf.constant(y), tf.constant(z)), rtol=1e-6)

    class ArtsLoss(APGD):  # the attack as ART builds it for loss_type="difference_logits_ratio"
        def _loss_object(self):
            return ARTAttack._loss_object(self)

        def _build(self, classifier):
            return AutoProjectedGradientDescent(
                estimator=classifier, norm=self.norm, eps=self.eps, eps_step=2 * self.eps / 10,
                max_iter=self.steps, nb_random_init=self.restarts,
                loss_type="difference_logits_ratio",
                batch_size=self._batch_size, verbose=False)

    x, labels = digits[2][:30], digits[3][:30]
    fn = lambda t: teacher(t, training=False)  # noqa: E731
    np.random.seed(0)
    ours_adv = apgd(fn, x, labels)
    np.random.seed(0)
    arts_adv = ArtsLoss(0.1, steps=5, loss="dlr")(fn, x, labels)
    np.testing.assert_allclose(ours_adv, arts_adv, atol=1e-6)
    assert np.abs(ours_adv - x).max() > 0.05  # it attacked


def token_and_feature_model():
    tokens = keras.Input((5,), dtype="int32", name="tokens")
    features = keras.Input((6,), name="features")
    h = keras.layers.Concatenate()([
        keras.layers.Flatten()(keras.layers.Embedding(20, 4)(tokens)),
        keras.layers.Dense(8, activation="relu")(features)])
    return keras.Model({"tokens": tokens, "features": features}, keras.layers.Dense(3)(h))


def test_attacks_perturb_float_inputs_and_leave_token_ids_alone():
    keras.utils.set_random_seed(0)
    model = token_and_feature_model()
    rng = np.random.default_rng(0)
    x = {"tokens": tf.constant(rng.integers(0, 20, (32, 5)), tf.int32),
         "features": tf.constant(rng.uniform(0, 1, (32, 6)), tf.float32)}
    y = tf.constant(rng.integers(0, 3, 32))
    ce = lambda inputs: float(tf.reduce_mean(  # noqa: E731
        tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(inputs))))
    for attack in (dw.PGD(0.1, steps=3), dw.FGSM(0.1), dw.PGD(0.1, steps=3, inputs=["features"])):
        x_adv = attack(lambda t: model(t, training=False), x, y)
        assert x_adv["tokens"].dtype == tf.int32
        np.testing.assert_array_equal(x_adv["tokens"].numpy(), x["tokens"].numpy())
        delta = x_adv["features"].numpy() - x["features"].numpy()
        assert 0.05 < np.abs(delta).max() <= 0.1 + 1e-6
        assert x_adv["features"].numpy().min() >= 0 and x_adv["features"].numpy().max() <= 1
        assert ce(x_adv) > ce(x)


def test_list_inputs_with_per_input_clip_ranges():
    a, b = keras.Input((4,)), keras.Input((3,))
    model = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))
    rng = np.random.default_rng(1)
    x = (tf.constant(rng.uniform(0, 1, (16, 4)), tf.float32),
         tf.constant(rng.uniform(-1, 1, (16, 3)), tf.float32))
    pgd = dw.PGD(0.5, steps=4, clip_min={0: 0.0, 1: -1.0}, clip_max={0: 1.0, 1: 1.0})
    x_adv = pgd(lambda t: model(t), x, tf.zeros([16], tf.int64))
    assert isinstance(x_adv, tuple) and len(x_adv) == 2
    assert x_adv[0].numpy().min() >= 0.0 and x_adv[1].numpy().min() >= -1.0
    assert x_adv[1].numpy().min() < 0.0  # the second input's own range, not [0, 1]
    for adv, clean in zip(x_adv, x):
        assert np.abs(adv.numpy() - clean.numpy()).max() <= 0.5 + 1e-6
    only_second = dw.FGSM(0.2, inputs=[1], clip_min=None, clip_max=None)(lambda t: model(t), x)
    np.testing.assert_array_equal(only_second[0].numpy(), x[0].numpy())
    assert np.abs(only_second[1].numpy() - x[1].numpy()).max() == pytest.approx(0.2)
    back = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(pgd))
    assert back.get_config() == pgd.get_config()


def test_attacks_that_cannot_apply_are_refused_when_the_deadwood_model_is_built():
    model = token_and_feature_model()
    student = dw.prune_model(model)
    with pytest.raises(ValueError, match=r"`inputs`.*\['tokens', 'features'\].*inputs=\['image'\]"):
        dw.DeadwoodModel(student, model, attack=dw.PGD(0.1, inputs=["image"]))
    with pytest.raises(ValueError, match=r"`inputs`: input 'tokens' has dtype int32"):
        dw.DeadwoodModel(student, model, attack=dw.PGD(0.1, inputs=["tokens"]))
    with pytest.raises(ValueError, match=r"`clip_max`: expected keys.*Received: clip_max=\{'feature'"):
        dw.DeadwoodModel(student, model, attack=dw.PGD(0.1, clip_max={"feature": 1.0}))
    tokens = keras.Input((5,), dtype="int32")
    text = keras.Model(tokens, keras.layers.Dense(3)(
        keras.layers.Flatten()(keras.layers.Embedding(20, 4)(tokens))))
    with pytest.raises(ValueError, match="perturbs floating-point inputs, but the model has none"):
        dw.DeadwoodModel(dw.prune_model(text), text, attack=dw.FGSM(0.1))
    dw.DeadwoodModel(dw.prune_model(text), text, attack=None)  # distillation only: fine
    with pytest.raises(ValueError, match="`inputs`"):
        dw.PGD(0.1, inputs=[])
    x = {"tokens": np.zeros((8, 5), "int32"), "features": np.zeros((8, 6), "float32")}
    result = dw.evaluate_robustness(model, x, np.zeros(8, "int64"), [dw.PGD(0.1, steps=2)])
    assert set(result) == {"clean", "pgd2_linf_0.1"}


@pytest.mark.parametrize("module", ["attacks", "gradient_attacks", "art_attacks", "attack_config",
                                    "robustness"])
def test_attack_module_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"deadwood_tf.{module}"))
    assert result.attempted > 0 and result.failed == 0


def test_attacks_namespace_keeps_every_name_of_its_parts():
    from deadwood_tf import art_attacks, attack_config, gradient_attacks, robustness

    assert dw.attacks.PGD is gradient_attacks.PGD is dw.PGD
    assert dw.attacks.APGD is art_attacks.APGD
    assert dw.attacks.from_config is attack_config.from_config
    assert dw.attacks.evaluate_robustness is robustness.evaluate_robustness is dw.evaluate_robustness
    # Saved attacks keep their registered names, whichever module defines them now.
    assert keras.saving.get_registered_name(dw.SquareAttack) == "deadwood_tf>SquareAttack"
