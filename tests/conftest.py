"""Shared fixtures: scikit-learn's digits (real data shipped with a dependency)
and a small CNN trained on them."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_early = []  # test modules whose workers were started at collection


@pytest.hookimpl(trylast=True)  # after -k / -m deselection
def pytest_collection_modifyitems(config, items):
    """Starts test_backends' worker processes early when any of its tests will run
    (not in a pytest-xdist worker: every worker collects every test, and the other
    worker runs beside anyway; there `measured` starts them when first needed)."""
    if hasattr(config, "workerinput"):
        return
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__ == "test_backends":
            module.start_workers()
            _early.append(module)
            return


def pytest_sessionfinish(session, exitstatus):
    for module in _early:  # the session ended before the tests that wait for them
        module.stop_workers()


def tiny_benchmark_config():
    """configs/benchmark_tiny.py's config: the seconds-long benchmark on digits."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "benchmark_tiny", os.path.join(ROOT, "configs", "benchmark_tiny.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.fixture(scope="session")
def digits():
    """(x_train, y_train, x_test, y_test): 8x8x1 images in [0, 1], int labels."""
    data = load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    y = data.target.astype("int64")
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def small_cnn(softmax=False, name="cnn"):
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv2D(32, 3, activation="relu", name="conv2"),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu", name="fc1"),
            keras.layers.Dense(10, activation="softmax" if softmax else None, name="logits"),
        ],
        name=name,
    )


def train(model, x, y, epochs=12, from_logits=True):
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=["accuracy"],
    )
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="session")
def teacher(digits):
    """A trained small CNN with logits output (about 97% test accuracy)."""
    keras.utils.set_random_seed(1)
    x, y, _, _ = digits
    return train(small_cnn(), x, y)
