"""Deadwood on models past one image input and one output: several outputs (the
constraints on the named class scores, the other outputs distilled), and text
(token ids: the robustness constraint in embedding space)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import deadwood_tf as dw


def _two_heads(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Flatten()(inputs)
    h = keras.layers.Dense(32, activation="relu", name="trunk")(h)
    cls = keras.layers.Dense(10, name="cls")(h)
    box = keras.layers.Dense(4, name="box")(h)
    return keras.Model(inputs, [cls, box])


@pytest.fixture(scope="module")
def two_heads(digits):
    x, y = digits[0][:256], digits[1][:256]
    teacher = _two_heads()
    teacher.compile("adam", [keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                             "mse"])
    teacher.fit(x, [y, np.tile(x.mean((1, 2, 3))[:, None], (1, 4))], epochs=3, verbose=0)
    return teacher, x, y


def test_several_outputs_need_a_named_head_and_a_loss_for_the_others(two_heads):
    teacher, _, _ = two_heads
    student = dw.prune_model(teacher)
    with pytest.raises(ValueError, match=r"2 outputs \['cls', 'box'\].*output='cls'.*"
                                         r"other_output_losses=\{'box': 'mse'\}"):
        dw.DeadwoodModel(student, teacher, attack=dw.FGSM(0.1))
    with pytest.raises(ValueError, match=r"`output`: expected one of \['cls', 'box'\]"):
        dw.DeadwoodModel(student, teacher, attack=dw.FGSM(0.1), output="boxes")
    with pytest.raises(ValueError, match=r"`other_output_losses`.*\['box'\]"):
        dw.DeadwoodModel(student, teacher, attack=dw.FGSM(0.1), output="cls")
    with pytest.raises(ValueError, match=r"`other_output_weights`"):
        dw.DeadwoodModel(student, teacher, attack=dw.FGSM(0.1), output="cls",
                         other_output_losses={"box": "mse"}, other_output_weights={"box": -1})
    single = dw.prune_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]))
    with pytest.raises(ValueError, match=r"one output"):
        dw.DeadwoodModel(single, single, attack=None, output="cls")


def test_constraints_act_on_the_named_head_and_the_others_are_distilled(two_heads, tmp_path):
    teacher, x, y = two_heads
    model = dw.DeadwoodModel(dw.prune_model(teacher), teacher, attack=dw.PGD(0.1, steps=2),
                             output="cls", other_output_losses={"box": "mse"})
    model.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    box_before = model.student.get_layer("box").kernel.numpy().copy()
    history = model.fit(x, y, epochs=2, batch_size=64, verbose=0,
                        callbacks=[dw.DeadwoodCallback(0.7, prune_epoch=1)])
    logs = history.history
    assert np.all(np.isfinite(logs["other_outputs_loss"])) and logs["other_outputs_loss"][0] > 0
    assert logs["adv_accuracy"][-1] <= 1.0 and "accuracy" in logs
    np.testing.assert_array_equal(model.violation_counts.numpy(), np.ones(len(x)))
    assert dw.sparsity_report(model.student).sparsity == pytest.approx(0.7, abs=1e-3)
    for w, m in dw.pruned_weights(model.student):
        assert np.all(w.numpy()[m.numpy() == 0] == 0)
    assert not np.array_equal(box_before, model.student.get_layer("box").kernel.numpy())
    # evaluate reports the class head; predict returns every output.
    assert set(model.evaluate(x[:64], y[:64], verbose=0, return_dict=True)) == {"loss",
                                                                                "accuracy"}
    cls, box = model.predict(x[:8], verbose=0)
    assert cls.shape == (8, 10) and box.shape == (8, 4)
    path = str(tmp_path / "two_heads.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert (loaded.heads.output, list(loaded.heads.losses)) == ("cls", ["box"])
    np.testing.assert_allclose(loaded.predict(x[:8], verbose=0)[1], box, atol=1e-6)


def _token_model(vocab=40, length=12, seed=0):
    keras.utils.set_random_seed(seed)
    ids = keras.Input((length,), dtype="int32", name="token_ids")
    h = keras.layers.Embedding(vocab, 16, name="tok")(ids)
    h = keras.layers.GlobalAveragePooling1D()(h)
    h = keras.layers.Dense(16, activation="relu", name="fc")(h)
    return keras.Model(ids, keras.layers.Dense(2, name="logits")(h))


@pytest.fixture(scope="module")
def text():
    """Token sequences whose class is whether token 7 occurs more often than token 9."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 40, size=(256, 12)).astype("int32")
    y = ((x == 7).sum(1) > (x == 9).sum(1)).astype("int64")
    teacher = _token_model()
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"])
    teacher.fit(x, y, epochs=30, verbose=0)
    return teacher, x, y


def test_the_embedding_attack_stays_in_its_ball_and_lowers_accuracy(text):
    teacher, x, y = text
    attack = dw.EmbeddingAttack(dw.PGD(1.0, steps=5, norm="l2"), layer="tok")
    attack.check_inputs(teacher)
    fn = lambda t: teacher(t, training=False)  # noqa: E731
    perturbed = attack(fn, tf.constant(x[:64]), tf.constant(y[:64]))
    norms = tf.norm(tf.reshape(perturbed.delta, [64, -1]), axis=1).numpy()
    assert norms.max() <= 1.0 + 1e-4 and norms.max() > 0.5
    result = dw.evaluate_robustness(teacher, x, y, [attack])
    assert result[attack.name] < result["clean"]
    assert attack.name == "pgd5_l2_1@tok" and "embedding space" in attack.description
    with pytest.raises(ValueError, match=r"no layer named 'emb'.*\['tok'\]"):
        dw.EmbeddingAttack(dw.PGD(1.0), layer="emb").check_inputs(teacher)
    with pytest.raises(ValueError, match="FGSM or PGD"):
        dw.EmbeddingAttack(dw.SquareAttack(0.1), layer="tok")
    # Token ids cannot be perturbed by a pixel attack: the error points here.
    with pytest.raises(ValueError, match="floating-point"):
        dw.DeadwoodModel(dw.prune_model(teacher), teacher, attack=dw.PGD(0.1))


def test_deadwood_trains_a_text_model_with_the_robustness_constraint_on(text, tmp_path):
    teacher, x, y = text
    attack = dw.EmbeddingAttack(dw.PGD(1.0, steps=3, norm="l2"), layer="tok")
    model = dw.DeadwoodModel(dw.prune_model(teacher), teacher, attack=attack)
    model.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    logs = model.fit(x, y, epochs=2, batch_size=64, verbose=0,
                     callbacks=[dw.DeadwoodCallback(0.5, prune_epoch=1)]).history
    # The constraint is on: violations were measured and the multipliers moved.
    assert logs["robustness_violation"][0] > 0
    mu = model.robustness_multipliers.numpy()
    assert mu.std() > 0 and len(np.unique(mu)) > 10
    assert dw.sparsity_report(model.student).sparsity == pytest.approx(0.5, abs=1e-3)
    path = str(tmp_path / "text.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.attack.name == attack.name
    np.testing.assert_array_equal(loaded.robustness_multipliers.numpy(), mu)


def test_a_kerashub_bert_classifier_trains_with_the_embedding_attack(tmp_path):
    """KerasHub's BERT (built from its arguments, no download): prune, Deadwood fit with
    the robustness constraint in embedding space, strip, .keras round trip."""
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=60, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=12)
    teacher = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=None,
                                                  activation=None)
    ids = np.random.default_rng(0).integers(1, 60, size=(128, 12)).astype("int32")
    x = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": np.ones_like(ids)}
    y = ((ids == 7).sum(1) > (ids == 9).sum(1)).astype("int64")
    attack = dw.EmbeddingAttack(dw.PGD(0.5, steps=2, norm="l2"), layer="token_embedding")
    model = dw.DeadwoodModel(dw.prune_model(teacher), teacher, attack=attack)
    model.compile(keras.optimizers.Adam(1e-3))
    logs = model.fit(x, y, epochs=2, batch_size=32, verbose=0,
                     callbacks=[dw.DeadwoodCallback(0.5, prune_epoch=1)]).history
    assert logs["robustness_violation"][-1] > 0 and logs["robustness_multiplier_max"][-1] > 1
    stripped = dw.strip_pruning(model)
    assert dw.sparsity_report(stripped).sparsity == pytest.approx(0.5, abs=1e-3)
    path = str(tmp_path / "bert.keras")
    stripped.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), stripped.predict(x, verbose=0),
                               atol=1e-5)
