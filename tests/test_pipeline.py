"""The pipeline's building blocks: the benchmark and the pipeline build one
Deadwood model from one config, the optimizer comes from the config in both,
and the one atomic write leaves the previous file on failure."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from deadwood_tf import atomic, pipeline, provenance
from deadwood_tf.benchmarks import runner
from deadwood_tf.benchmarks.config import benchmark_config

SETTINGS = ("fidelity_bound", "robustness_bound", "sparsity_weight", "label_weight",
            "temperature", "robust_target", "batch_norm", "sparsity_term", "initial_multiplier",
            "num_examples", "from_logits", "masked_weights")


def _teacher():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 1)),
                             keras.layers.Conv2D(4, 3, activation="relu"),
                             keras.layers.Flatten(), keras.layers.Dense(10)])


def _one_step(model, x, y):
    """The loss of one training step on `(x, y)` and the student's weights after it."""
    data = tf.data.Dataset.from_tensor_slices((x, y, np.arange(len(x), dtype="int64")))
    history = model.fit(data.batch(len(x)), epochs=1, verbose=0, shuffle=False)
    return history.history["loss"][0], [w.numpy() for w in model.student.weights]


@pytest.mark.parametrize("pattern", ["", "channel", "1x4"])
def test_the_benchmark_and_the_pipeline_build_the_same_deadwood_model_and_step(digits, pattern):
    config = benchmark_config()
    config.attack.random_start = False  # the step is deterministic: both see the same x~
    config.prune.pattern = pattern      # a block pattern used to raise in the benchmark
    x, y = digits[0][:32], digits[1][:32]
    teacher = _teacher()
    ours = pipeline.compile_deadwood(pipeline.make_deadwood_model(config, teacher, 32), config)
    theirs, _, per_example = runner.make_deadwood_model(config, (), teacher, 32)
    assert per_example and type(theirs) is type(ours)
    a, b = ours.get_config(), theirs.get_config()
    assert {k: a[k] for k in SETTINGS} == {k: b[k] for k in SETTINGS}
    assert a["attack"]["config"] == b["attack"]["config"]
    assert a["sparsity_term"] == ("group_lasso" if pattern == "channel" else "l1")
    assert type(ours.optimizer) is type(theirs.optimizer) is keras.optimizers.Adam
    assert float(ours.optimizer.learning_rate) == float(theirs.optimizer.learning_rate) == \
        pytest.approx(config.deadwood.learning_rate)
    loss_ours, weights_ours = _one_step(ours, x, y)
    loss_theirs, weights_theirs = _one_step(theirs, x, y)
    assert loss_ours == pytest.approx(loss_theirs, rel=1e-6)
    for u, v in zip(weights_ours, weights_theirs):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    assert not np.allclose(weights_ours[0], teacher.weights[0].numpy())  # the step moved it


def test_the_benchmark_trains_with_the_configs_optimizer_and_hashes_it_only_when_set():
    config = benchmark_config()
    teacher = _teacher()
    before = {m: runner.fingerprint(config, m) for m in runner.METHODS}
    without = config.to_dict()
    del without["optimizer"]  # rows made before the field existed: Adam
    import ml_collections

    assert {m: runner.fingerprint(ml_collections.ConfigDict(without), m)
            for m in runner.METHODS} == before
    config.optimizer = "sgd"
    model = runner.make_deadwood_model(config, (), teacher, 16)[0]
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    after = {m: runner.fingerprint(config, m) for m in runner.METHODS}
    assert all(after[m] != before[m] for m in runner.METHODS)  # every row reads the dense model
    config.optimizer = "no_such_optimizer"
    with pytest.raises(ValueError, match=r"`optimizer`.*Received: 'no_such_optimizer'"):
        runner.make_deadwood_model(config, (), teacher, 16)


def test_a_failed_atomic_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = str(tmp_path / "rows" / "row.json")
    atomic.write_json(path, {"clean": 0.5})

    def fail(tmp):
        with open(tmp, "w") as f:
            f.write("{half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic.write_file(path, fail)
    assert json.load(open(path)) == {"clean": 0.5}
    assert os.listdir(tmp_path / "rows") == ["row.json"]


def test_provenance_names_the_versions_and_the_machine():
    import deadwood_tf

    v, m = provenance.versions(), provenance.machine()
    assert v["deadwood_tf"] == deadwood_tf.__version__ and v["keras"] == keras.__version__
    assert m["cpu_count"] == os.cpu_count() and m["platform"]
