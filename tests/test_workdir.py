"""The work directory: one run at a time, atomic saves that survive a full disk,
and artefacts that are verified before they are reused."""

import errno
import json
import os
import signal
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

from conftest import small_cnn
from deadwood_tf import workdir as workdir_lib
from deadwood_tf.workdir import BackupCallback, Workdir, WorkdirInUseError, sha256

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _snapshot(path):
    return {os.path.join(d, n): (os.path.getsize(os.path.join(d, n)),
                                 os.stat(os.path.join(d, n)).st_mtime_ns)
            for d, _, fs in os.walk(path) for n in fs}


def _hold_lock(path):
    """Another run: a process holding the lock of `path` until killed."""
    code = ("import sys, time; from deadwood_tf.workdir import Workdir; "
            "Workdir(sys.argv[1], log=print).lock(); print('locked', flush=True); time.sleep(300)")
    proc = subprocess.Popen([sys.executable, "-c", code, path], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_run_stops_at_once_naming_the_holder_and_touching_nothing(tmp_path):
    from deadwood_tf import config as config_lib, train

    path = str(tmp_path / "w")
    os.makedirs(path)
    with open(os.path.join(path, "teacher.keras"), "wb") as f:
        f.write(b"a half-trained run's file")
    holder = _hold_lock(path)
    try:
        before = _snapshot(path)
        lock_record = json.load(open(os.path.join(path, "run.lock")))
        with pytest.raises(WorkdirInUseError, match=rf"{path} is in use by another run: pid "
                           rf"{holder.pid} on host {lock_record['host']}, started "
                           r"\d{4}-.*Nothing was changed"):
            train.train_and_evaluate(config_lib.default_config(), path)
        assert _snapshot(path) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()

    # The holder died without releasing: its lock is taken over, and the log says whose it was.
    logs = []
    with Workdir(path, log=logs.append):
        assert json.load(open(os.path.join(path, "run.lock")))["pid"] == os.getpid()
    assert len(logs) == 1 and f"pid {holder.pid}" in logs[0] and "is gone" in logs[0], logs
    assert os.path.getsize(os.path.join(path, "run.lock")) == 0  # released: free
    logs.clear()
    with Workdir(path, log=logs.append):
        pass
    assert logs == []


def _weights(model):
    return [w.numpy() for w in model.weights]


def test_a_full_disk_during_a_save_keeps_the_previous_artefact(tmp_path, monkeypatch):
    keras.utils.set_random_seed(0)
    first, second = small_cnn(name="a"), small_cnn(name="b")
    wd = Workdir(str(tmp_path), log=print)
    wd.lock()
    wd.save_model(first, "teacher.keras")
    digest = sha256(wd.file("teacher.keras"))

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(zipfile.ZipFile, "writestr", full_disk)
    with pytest.raises(OSError, match=r"Could not save teacher\.keras in .*: No space left on "
                       r"device \(ENOSPC\).*The previous teacher\.keras is intact; nothing was "
                       "replaced") as info:
        wd.save_model(second, "teacher.keras")
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert sha256(wd.file("teacher.keras")) == digest
    assert sorted(os.listdir(tmp_path)) == ["manifest.json", "run.lock", "teacher.keras"]
    loaded = wd.load("teacher.keras", keras.models.load_model, "redo")
    assert all(np.array_equal(a, b) for a, b in zip(_weights(loaded), _weights(first)))

    # The same when the disk fills while the manifest is written: nothing replaced.
    real = workdir_lib.Workdir._write_manifest

    def manifest_full(self):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(workdir_lib.Workdir, "_write_manifest", manifest_full)
    with pytest.raises(OSError, match="No space left on device"):
        wd.save("teacher.keras", lambda tmp: second.save(tmp))
    monkeypatch.setattr(workdir_lib.Workdir, "_write_manifest", real)
    assert sha256(wd.file("teacher.keras")) == digest and wd.verify("teacher.keras") == ""
    wd.unlock()


def test_a_damaged_file_is_moved_aside_with_the_reason_logged(tmp_path):
    keras.utils.set_random_seed(0)
    logs = []
    with Workdir(str(tmp_path), log=logs.append) as wd:
        # Recorded, then damaged: the digest catches it.
        wd.save_model(small_cnn(), "teacher.keras")
        with open(wd.file("teacher.keras"), "r+b") as f:
            f.truncate(1000)
        assert wd.load("teacher.keras", keras.models.load_model, "redoing the teacher") is None
        assert "teacher.keras" not in os.listdir(tmp_path)
        moved = [n for n in os.listdir(tmp_path) if n.startswith("teacher.keras.corrupt-")]
        assert len(moved) == 1 and os.path.getsize(tmp_path / moved[0]) == 1000
        assert logs[-1].startswith("deadwood_tf: teacher.keras cannot be trusted: its sha256 ")
        assert logs[-1].endswith(f"Moved it to {moved[0]}; redoing the teacher.")
        assert wd.recorded() == []

        # Not recorded (an older run, a copy cut short): it must load, else it goes too.
        small_cnn().save(wd.file("model.keras"))
        with open(wd.file("model.keras"), "r+b") as f:
            f.truncate(2000)
        assert wd.load("model.keras", keras.models.load_model, "redoing Deadwood") is None
        assert "it does not load" in logs[-1] and "redoing Deadwood" in logs[-1]
        small_cnn().save(wd.file("model.keras"))
        assert wd.load("model.keras", keras.models.load_model, "redo") is not None
        assert wd.recorded() == ["model.keras"] and wd.verify("model.keras") == ""


def _compiled():
    model = small_cnn()
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_a_backup_resumes_its_fit_exactly_and_a_damaged_one_is_refused(digits, tmp_path):
    x, y = digits[0][:256], digits[1][:256]
    keras.utils.set_random_seed(0)
    logs = []
    with Workdir(str(tmp_path), log=logs.append) as wd:
        model = _compiled()
        backup = BackupCallback(wd, "backup")
        assert backup.resume_epoch() == 0
        model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[backup])
        assert os.listdir(wd.file("backup")) == ["epoch-0002.weights.h5"]

        resumed = _compiled()
        backup = BackupCallback(wd, "backup")
        assert backup.resume_epoch() == 2
        seen = {}

        class Probe(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                seen["weights"] = _weights(self.model)
                seen["iterations"] = int(self.model.optimizer.iterations.numpy())

        resumed.fit(x, y, initial_epoch=2, epochs=3, batch_size=64, verbose=0,
                    callbacks=[backup, Probe()])
        assert seen["iterations"] == 8  # 2 epochs of 4 steps: the optimizer state came back
        assert all(np.array_equal(a, b) for a, b in zip(seen["weights"], _weights(model)))
        assert os.listdir(wd.file("backup")) == ["epoch-0003.weights.h5"]

        with open(wd.file("backup/epoch-0003.weights.h5"), "r+b") as f:
            f.seek(5000)
            f.write(b"\xff" * 64)
        assert BackupCallback(wd, "backup").resume_epoch("the fit starts over") == 0
        assert not os.path.exists(wd.file("backup"))
        assert any(n.startswith("backup.corrupt-") for n in os.listdir(tmp_path))
        assert "epoch-0003.weights.h5 cannot be trusted: its sha256" in logs[-2]
        assert logs[-1].endswith("the fit starts over.")


def test_the_module_docstring_example_runs():
    import doctest

    result = doctest.testmod(workdir_lib)
    assert result.attempted > 0 and result.failed == 0
