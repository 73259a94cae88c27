"""The masks on Keras' other backends: JAX (and PyTorch, where installed).

Each backend runs in a fresh process (tests/backend_worker.py): Keras picks its
backend at first import, and this pytest process runs on TensorFlow. A small
CNN and a small functional MLP are pruned and cut, trained with a plain
`model.fit` (masked weights stay exactly zero, kept ones move), cut again
after the training step was compiled (the next `fit` sees the new masks),
stripped, saved and loaded as `.keras`, and cut gradually by
`DeadwoodCallback` during `fit`. `DeadwoodModel.fit` (TensorFlow only) must
refuse with a clear error. On JAX, the coverage table's JAX cell
(`coverage.jax_cell`) of a subclassed and a two-output model must be ok.
"""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = ("cnn", "mlp")
BACKENDS = ("jax", "torch")
_started = {}  # backend -> (process, output folder)


def start_workers():
    """Starts the worker of every installed backend, once; tests/conftest.py calls this
    when the session's tests are collected, so the workers run beside the tests before
    this module's (on 2 cores, while those mostly keep one busy)."""
    for backend in BACKENDS:
        if backend in _started or importlib.util.find_spec(backend) is None:
            continue
        folder = tempfile.mkdtemp(prefix=f"backend-{backend}-")
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
                   PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with open(os.path.join(folder, "log"), "w") as log:
            process = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "backend_worker.py"),
                 os.path.join(folder, "measured.json")],
                env=env, stdout=log, stderr=subprocess.STDOUT)
        _started[backend] = process, folder


def stop_workers():
    for process, folder in _started.values():
        if process.poll() is None:
            process.kill()
            process.wait(60)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module", params=BACKENDS)
def measured(request):
    backend = request.param
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (pip install -e .[test] installs jax; "
                    "torch is not a test extra)")
    start_workers()
    process, folder = _started[backend]
    try:
        returncode = process.wait(timeout=600)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(60)
        raise
    try:
        with open(os.path.join(folder, "log"), errors="replace") as f:
            assert returncode == 0, f.read()[-4000:]
        with open(os.path.join(folder, "measured.json")) as f:
            result = json.load(f)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert result["backend"] == backend
    return result


@pytest.mark.parametrize("model", MODELS)
def test_cut_reaches_the_exact_target(measured, model):
    m = measured[model]
    assert m["cut"] == pytest.approx(m["cut_expected"], abs=1e-12)
    assert m["second_cut"] == pytest.approx(m["second_cut_expected"], abs=1e-12)


@pytest.mark.parametrize("model", MODELS)
def test_fit_keeps_masked_weights_at_exactly_zero(measured, model):
    m = measured[model]
    assert m["masked_nonzeros_after_fit"] == 0
    assert m["kept_changed"] > 0.5  # the optimizer did move the kept weights
    # The step compiled before the second cut must not hold the old masks.
    assert m["masked_nonzeros_after_second_fit"] == 0


@pytest.mark.parametrize("model", MODELS)
def test_strip_and_keras_round_trip_give_the_same_outputs(measured, model):
    m = measured[model]
    assert m["stripped_masks"] == 0
    assert m["strip_max_diff"] <= 1e-6
    assert m["loaded_max_diff"] <= 1e-6
    assert m["loaded_sparsity"] == pytest.approx(m["pruned_sparsity"], abs=1e-12)


@pytest.mark.parametrize("model", MODELS)
def test_callback_cuts_gradually_to_the_target(measured, model):
    m = measured[model]
    first, *rest = m["callback_sparsity_logs"]
    assert 0 < first < m["callback_expected"]  # cubic: 7/8 of the target after epoch 1
    assert rest == [pytest.approx(m["callback_expected"], abs=1e-12)] * 2
    assert m["callback_masked_nonzeros"] == 0


def test_deadwood_model_says_it_needs_tensorflow(measured):
    assert "runs on the TensorFlow backend only" in measured["deadwood_model_fit"]


def test_structured_cuts(measured):
    assert measured["two_four"] == pytest.approx(0.5, abs=1e-3)
    assert measured["two_four_worst_group"] == 2
    assert measured["channel_macs_removed"] >= 0.5
    assert measured["shrunk_max_diff"] <= 1e-5


def test_coverage_jax_cells_are_ok(measured):
    if measured["backend"] != "jax":
        pytest.skip("the coverage table's JAX column runs on JAX only")
    cells = measured["coverage_cells"]
    assert set(cells) == {"subclassed", "two outputs"}
    for name, (ok, text) in cells.items():
        assert ok, (name, text)
        assert re.match(r"cut (\d+) = round\(0\.9 \* (\d+)\), \1 masked stay 0 through fit, "
                        r"\w+ loaded with the same outputs$", text), text
