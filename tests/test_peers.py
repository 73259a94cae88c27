"""The benchmark's external peers: HYDRA as published and PQuantML's methods (tiny models)."""

import math
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from deadwood_tf import attacks, data, models, prune
from deadwood_tf.benchmarks import baselines, runner

from conftest import tiny_benchmark_config

SPARSITY = 0.8
PUBLISHED = dict(scope="layer", score_init="scaled", optimizer="sgd", momentum=0.9,
                 weight_decay=1e-4, lr_schedule="cosine", score_learning_rate=0.1,
                 learning_rate=0.01)


@pytest.fixture(scope="module")
def digits():
    return data.load_dataset("digits", num_train=192, num_test=10, seed=0)


@pytest.fixture(scope="module")
def dense(digits):
    keras.utils.set_random_seed(0)
    return models.build_model("small_cnn", digits.input_shape, digits.num_classes, width=8)


@pytest.fixture(scope="module")
def attack():
    return attacks.make_attack("pgd", 0.1, steps=1, step_size=0.1, random_start=True)


def expected_zeros(size, sparsity=SPARSITY):
    return round(sparsity * size)


tiny_config = tiny_benchmark_config


# ---------------------------------------------------------------- HYDRA


def test_published_hydra_prunes_every_layer_to_the_target(dense, digits, attack):
    scorer = baselines._HydraScores(prune.prune_model(dense), attack, SPARSITY, scope="layer",
                                    score_init="scaled")
    for mask, (w, _) in zip(scorer.hard_masks(), scorer.entries):
        size = int(np.prod(w.shape))
        assert size - int(mask.numpy().sum()) == expected_zeros(size)
    keras.utils.set_random_seed(1)
    out = baselines.hydra(dense, digits, SPARSITY, attack=attack, score_epochs=1, epochs=2,
                          batch_size=64, verbose=0, **PUBLISHED)
    report = prune.sparsity_report(out)
    assert len(report.weights) == 4
    for w in report.weights:
        assert abs(w.zeros - expected_zeros(w.size)) <= 1, w.name
    # The dense model is left as it was.
    assert prune.sparsity_report(dense).sparsity == 0


def test_global_hydra_cuts_the_network_not_each_layer(dense, digits, attack):
    scorer = baselines._HydraScores(prune.prune_model(dense), attack, SPARSITY)
    masks = [m.numpy() for m in scorer.hard_masks()]
    sizes = [m.size for m in masks]
    assert sum(m.size - m.sum() for m in masks) == expected_zeros(sum(sizes))
    per_layer = [1 - m.mean() for m in masks]
    assert max(per_layer) - min(per_layer) > 0.05  # magnitudes differ between layers


def test_scaled_scores_are_hydras_initialisation(dense, attack):
    scorer = baselines._HydraScores(prune.prune_model(dense), attack, SPARSITY, scope="layer",
                                    score_init="scaled")
    fan_ins = {"conv1": 3 * 3 * 1, "conv2": 3 * 3 * 8, "fc1": 16, "logits": 32}
    seen = []
    for score, (w, _) in zip(scorer.scores, scorer.entries):
        name = w.path.split("/")[0]
        w = w.numpy()
        expected = math.sqrt(6 / fan_ins[name]) * w / np.abs(w).max()
        np.testing.assert_allclose(score.numpy(), expected, rtol=1e-5, atol=1e-7)
        seen.append(name)
    assert sorted(seen) == sorted(fan_ins)


def test_hydra_sgd_adds_l2_to_the_gradient_as_torch_does():
    v = keras.Variable(np.array([1.0, -2.0], "float32"))
    opt = baselines._SGDWithL2(l2=0.1, learning_rate=0.5, momentum=0.9)
    g = tf.constant([0.2, 0.2])
    # torch.optim.SGD: buf = momentum * buf + (g + wd * w); w -= lr * buf.
    opt.apply_gradients([(g, v)])
    np.testing.assert_allclose(v.numpy(), [1.0 - 0.5 * 0.3, -2.0], rtol=1e-6)
    opt.apply_gradients([(g, v)])
    np.testing.assert_allclose(v.numpy(), [0.85 - 0.5 * (0.9 * 0.3 + 0.285), -2.0], rtol=1e-6)


def test_hydra_rejects_unknown_settings(dense, digits, attack):
    with pytest.raises(ValueError, match="Invalid value for `scope`.*Received: scope='network'"):
        baselines.hydra(dense, digits, SPARSITY, attack=attack, scope="network")
    with pytest.raises(ValueError, match="`score_epochs`.*Received: score_epochs=7"):
        baselines.hydra(dense, digits, SPARSITY, attack=attack, score_epochs=7, epochs=6)


# ---------------------------------------------------------------- runner


def test_each_peer_row_reads_its_own_section():
    c = tiny_config()
    before = {m: runner.fingerprint(c, m) for m in runner.METHODS}

    def changed_by(edit):
        edit(c)
        after = {m: runner.fingerprint(c, m) for m in runner.METHODS}
        out = sorted(m for m in after if after[m] != before[m])
        before.update(after)
        return out

    assert changed_by(lambda c: setattr(c.hydra_published, "weight_decay", 0.0)) == ["hydra"]
    assert changed_by(lambda c: setattr(c.hydra, "scope", "layer")) == ["hydra_global"]
    assert changed_by(lambda c: setattr(c.pquant.mdmm, "constraint_lr", 0.1)) == [
        "pquant_mdmm"]
    assert changed_by(lambda c: setattr(c.pquant.pdp, "epsilon", 0.5)) == ["pquant_pdp"]
    # Published HYDRA has its own learning rates; the others train at the benchmark's.
    lr = changed_by(lambda c: setattr(c.deadwood, "learning_rate", 3e-4))
    assert "hydra" not in lr and {"hydra_global", "pquant_mdmm", "pquant_pdp"} <= set(lr)


# ---------------------------------------------------------------- PQuantML


def test_pquant_defaults_are_pquants_own():
    pquant = pytest.importorskip("pquant")
    c = tiny_config()
    for method in ("mdmm", "pdp"):
        theirs = getattr(pquant, f"{method}_config")().pruning_parameters.model_dump(mode="json")
        ours = c.pquant[method].to_dict()
        ours.pop("pruning_epochs"), ours.pop("sparsity_tolerance")
        # PDP's ramp is the one rate scaled to this budget (see benchmarks/config.py).
        differ = {k for k in ours if ours[k] != theirs[k]}
        assert differ == ({"epsilon"} if method == "pdp" else set()), method


def test_pquant_pdp_ends_at_the_target_as_a_plain_keras_model(dense, digits, attack):
    pytest.importorskip("pquant")
    keras.utils.set_random_seed(2)
    out = baselines.pquant(dense, digits, SPARSITY, method="pdp", attack=attack,
                           pruning_epochs=1, epochs=2, batch_size=64, verbose=0, epsilon=1.0)
    assert [type(layer) for layer in out.layers] == [type(layer) for layer in dense.layers]
    assert all(type(layer).__module__.startswith("keras.") for layer in out.layers)
    # PQuantML 0.1.0's Keras PDP prunes every layer to the target: its layer
    # budgets (`_pdp_setup`'s `init_r`) are not read by the Keras layer.
    for w in prune.sparsity_report(out).weights:
        assert abs(w.zeros - expected_zeros(w.size)) <= 1, (w.name, w.sparsity)
    assert np.isfinite(out.predict(digits.x_test[:4], verbose=0)).all()


def test_pquant_mdmm_fails_loudly_where_it_misses_the_target(dense, digits, attack):
    pytest.importorskip("pquant")
    keras.utils.set_random_seed(3)
    # One pruning epoch of MDMM's slow constraint cannot reach 0.8: no row.
    with pytest.raises(RuntimeError, match=r"PQuantML mdmm ended at sparsity 0\.[0-7]\d* \("
                       r"conv1/kernel .*not the target 0\.8 \(tolerance 0\.002\)"):
        baselines.pquant(dense, digits, SPARSITY, method="mdmm", attack=attack,
                         pruning_epochs=1, epochs=2, batch_size=64, verbose=0)


def test_pquant_refuses_what_it_cannot_rebuild(digits, attack):
    pytest.importorskip("pquant")
    resnet = models.build_model("resnet", (8, 8, 1), 10, width=4, depth=1)
    with pytest.raises(ValueError, match="one chain"):
        baselines.pquant(resnet, digits, SPARSITY, method="pdp", attack=attack,
                         pruning_epochs=1, epochs=1)
    seq = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                            keras.layers.Dense(10)])
    with pytest.raises(ValueError, match="InputLayer"):
        baselines.pquant(seq, digits, SPARSITY, method="pdp", attack=attack, pruning_epochs=1,
                         epochs=1)
    chain = models.build_model("small_cnn", (8, 8, 1), 10, width=4)
    with pytest.raises(ValueError, match="unknown PQuantML pruning parameters \\['sparsity_x'\\]"):
        baselines.pquant(chain, digits, SPARSITY, method="pdp", attack=attack,
                         pruning_epochs=1, epochs=1, sparsity_x=1)
    with pytest.raises(ValueError, match="Invalid value for `method`"):
        baselines.pquant(chain, digits, SPARSITY, method="cs", attack=attack, pruning_epochs=1,
                         epochs=1)


def test_pquant_rows_name_the_extra_they_need(monkeypatch, dense, digits, attack):
    monkeypatch.setitem(sys.modules, "pquant", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install -e \.\[peers\]"):
        baselines.pquant(dense, digits, SPARSITY, method="pdp", attack=attack, pruning_epochs=1,
                         epochs=1)
