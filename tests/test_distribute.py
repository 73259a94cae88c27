"""Deadwood on tf.distribute, on CPU: MirroredStrategy over two logical devices and
MultiWorkerMirroredStrategy with two worker processes on 127.0.0.1.

Each run happens in a fresh process (tests/distribute_worker.py): logical
devices and collective ops must be configured before TensorFlow initialises
its runtime, which this pytest process has long done.

What is tested is what must hold on any machine, not a trajectory. The
mirrored run sums two half-batch gradients where one device takes the mean over
the whole batch, so the two runs differ by float32 round-off; the worker makes
every decision in them continuous in that round-off, so it cannot be amplified
into a different run: the cut is made once, before training, on the teacher's
(identical) weights, and the attack is the L2 fast gradient (x + eps g/|g|), not
FGSM's sign, which flips where a gradient is within round-off of zero. After 3
epochs (24 steps) weights, violations and multipliers then agree within 1e-4
(measured 2e-7, 3e-6 and 1e-6 on a 2-core x86 machine). Exact, whatever the
machine: masks, example counts (every example once per epoch), the dual step
taken against the method's formula on the run's own violations, .keras and
BackupAndRestore round trips, and the two workers' states.
"""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import small_cnn, train
from tool_runner import run_tool

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "distribute_worker.py")
ROOT = os.path.dirname(HERE)
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def teacher_path(digits, tmp_path_factory):
    keras.utils.set_random_seed(1)
    x, y, _, _ = digits
    path = str(tmp_path_factory.mktemp("teacher") / "teacher.keras")
    train(small_cnn(), x, y, epochs=6).save(path)
    return path


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tail(path, n=3000):
    with open(path, errors="replace") as f:
        return f.read()[-n:]


def test_mirrored_two_logical_devices_matches_one_device(teacher_path, tmp_path):
    log = tmp_path / "mirrored.log"
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, WORKER, "mirrored", f"--teacher={teacher_path}",
                               f"--out={tmp_path}"], stdout=f, stderr=subprocess.STDOUT,
                              env=_env(), timeout=240)
    assert proc.returncode == 0, _tail(log)
    r = json.loads((tmp_path / "mirrored.json").read_text())
    assert r["replicas"] == 2
    same = r["mirrored_vs_one_device"]
    assert same["masks_equal"], same
    assert same["counts_equal"] and r["counts_all_one"], "an update was lost or applied twice"
    assert r["every_example_once_per_epoch"], "an example was seen twice or not at all in an epoch"
    # The dual step the replicas took is the method's formula on their own violations.
    assert r["dual_step_max_gap"] <= 1e-6, r["dual_step_max_gap"]
    assert same["max_multiplier_diff"] <= TOLERANCE, same
    assert same["max_weight_diff"] <= TOLERANCE, same
    assert same["max_violation_diff"] <= TOLERANCE, same
    assert r["sparsity"] == [pytest.approx(0.8, abs=1e-4)] * 2
    assert r["replica_copies_identical"], "the replicas' copies of masks/buffers differ"
    for key in ("keras_mirrored_to_one_device", "keras_one_device_to_mirrored",
                "backup_mirrored_to_one_device", "backup_one_device_to_mirrored"):
        assert r[key]["all_exact"], (key, r[key])
    assert r["backup_mirrored_to_one_device"]["initial_epoch"] == 2
    assert r["backup_one_device_to_mirrored"]["initial_epoch"] == 2
    assert r["trains_after_restore"]


def test_multi_worker_two_processes(teacher_path, tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs, logs = [], []
    try:
        for i in range(2):
            logs.append(tmp_path / f"worker_{i}.log")
            tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
            procs.append(subprocess.Popen(
                [sys.executable, WORKER, "multi_worker", f"--teacher={teacher_path}",
                 f"--out={tmp_path}"], stdout=open(logs[-1], "w"), stderr=subprocess.STDOUT,
                env=_env(TF_CONFIG=tf_config)))
        for i, p in enumerate(procs):
            try:
                rc = p.wait(timeout=240)
            except subprocess.TimeoutExpired:
                pytest.fail(f"worker {i} did not finish in time:\n{_tail(logs[i])}")
            assert rc == 0, f"worker {i} failed:\n{_tail(logs[i])}"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
            if p.stdout:
                p.stdout.close()

    info = [json.loads((tmp_path / f"worker_{i}.json").read_text()) for i in range(2)]
    assert [w["chief"] for w in info] == [True, False]
    assert all(w["replicas"] == 2 for w in info)
    states = [dict(np.load(tmp_path / f"worker_{i}.npz")) for i in range(2)]
    assert sorted(states[0]) == sorted(states[1])
    for key in states[0]:  # masks, weights, multipliers, buffers: identical on both workers
        np.testing.assert_array_equal(states[0][key], states[1][key], err_msg=key)
    # Every example of the 453 was seen once in the last epoch, by one worker or the other.
    np.testing.assert_array_equal(states[0]["violation_counts"], np.ones(453, "float32"))
    masks = [k for k in states[0] if k.startswith("mask/")]
    kept = sum(states[0][k].sum() for k in masks)
    total = sum(states[0][k].size for k in masks)
    assert 1 - kept / total == pytest.approx(0.8, abs=1e-4)

    # Only the chief wrote to the output directory; the other worker to its temp dir.
    assert (tmp_path / "model.keras").exists()
    assert (tmp_path / "workertemp_1" / "model.keras").exists()
    # The chief's checkpoint restores on one device (this process: no strategy).
    import deadwood_tf as dw

    restored = keras.models.load_model(str(tmp_path / "model.keras"))
    assert isinstance(restored, dw.DeadwoodModel)
    for i, (weight, mask) in enumerate(dw.pruned_weights(restored)):
        np.testing.assert_array_equal(mask.numpy(), states[0][f"mask/{i}"])
        np.testing.assert_array_equal(weight.numpy(), states[0][f"weight/{i}"])
    for name in ("fidelity_multipliers", "robustness_multipliers", "violation_counts"):
        np.testing.assert_array_equal(getattr(restored, name).numpy(), states[0][name])


def test_strategy_flag_and_config_are_checked():
    from deadwood_tf import config as config_lib
    from deadwood_tf import train as train_lib

    c = config_lib.default_config()
    assert c.strategy == "one_device"
    c.strategy = "tpu"
    with pytest.raises(ValueError, match=r"strategy.*one_device.*mirrored.*multi_worker.*tpu"):
        train_lib.validate(c)
    c.strategy = "multi_worker"
    with pytest.raises(ValueError, match=r"teacher_path.*Received: teacher_path=''"):
        train_lib.validate(c)
    with pytest.raises(ValueError, match=r"TF_CONFIG.*Received"):
        train_lib.worker_info("multi_worker", tf_config="{not json")
    with pytest.raises(ValueError, match=r"TF_CONFIG.*task"):
        train_lib.worker_info("multi_worker", tf_config=json.dumps({"cluster": {"worker": ["a:1"]}}))
    assert train_lib.worker_info("one_device", tf_config="") == (True, 0)
    assert train_lib.worker_info("multi_worker", tf_config=json.dumps(
        {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}})) == (False, 1)
    assert train_lib.worker_info("multi_worker", tf_config=json.dumps(
        {"cluster": {"chief": ["a:1"], "worker": ["b:2"]},
         "task": {"type": "worker", "index": 0}})) == (False, 0)


def test_cli_rejects_bad_strategy_flag(tmp_path):
    proc = run_tool("train.py", "--config=configs/digits_cnn.py", f"--workdir={tmp_path}",
                    "--strategy=tpu", check=False)
    assert proc.returncode != 0
    assert "ValueError" in proc.stderr and "--strategy" in proc.stderr \
        and "Received: --strategy='tpu'" in proc.stderr, proc.stderr[-2000:]
