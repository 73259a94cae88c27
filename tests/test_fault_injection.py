"""Fault injection: the pipeline killed (SIGKILL) in every phase, a file damaged
between runs; each rerun resumes where it should, says from where, and the last
one finishes with the exact sparsity, a complete report and no half-written file."""

import json
import os
import re
import signal
import threading

import pytest

from tool_runner import TINY, run_tool, start_tool

ARGS = [*TINY, "--config.teacher.epochs=4", "--config.teacher.adversarial_epochs=2",
        "--config.prune.solve_epochs=2", "--config.prune.finetune_epochs=2",
        "--config.prune.target_sparsity=0.8"]


def _run_until(workdir, phase, line, timeout=600):
    """Runs the pipeline and SIGKILLs it when `line` starts a stdout line after `phase`
    appeared; returns the output up to then."""
    proc = start_tool("train.py", *ARGS, f"--workdir={workdir}")
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    out, in_phase = [], False
    try:
        for text in proc.lines():
            out.append(text)
            in_phase = in_phase or phase in text
            if in_phase and text.startswith(line):
                proc.kill()
                break
    finally:
        timer.cancel()
        proc.wait(60)
        proc.close()
    output = "".join(out)
    assert proc.returncode == -signal.SIGKILL, \
        f"not killed at {phase!r}/{line!r}:\n{output[-3000:]}"
    return output


def _entries(workdir):
    with open(os.path.join(workdir, "checkpoints.jsonl")) as f:
        return [json.loads(line) for line in f]


def _half_written(workdir):
    return [os.path.join(d, n) for d, ds, fs in os.walk(workdir) for n in fs + ds
            if n.startswith(".tmp-") or re.search(r"\.tmp(\.|$)", n)]


def test_killed_in_every_phase_then_rerun_finishes_exactly(tmp_path):
    workdir = str(tmp_path / "w")
    from deadwood_tf.workdir import Workdir, sha256

    # 1. Killed in the teacher's natural training, after epoch 2 of 4.
    _run_until(workdir, "Teacher: natural training", "Epoch 3/4")
    # 2. Resumes it from the backup (and says so); killed in adversarial training.
    out = _run_until(workdir, "Teacher: adversarial training", "Epoch 2/2")
    assert "Teacher: natural training: resuming at epoch 3/4 from " \
           "backup_teacher/epoch-0002.weights.h5" in out
    # 3. Resumes adversarial training; killed in the Deadwood solve phase after epoch 1.
    out = _run_until(workdir, "Deadwood solve phase", "Epoch 2/4")
    assert "Teacher: adversarial training: resuming at epoch 2/2 from " \
           "backup_teacher_at/epoch-0001.weights.h5" in out
    assert "Teacher: natural training" not in out  # done before: teacher_natural.keras
    # A damaged teacher (a disk fault, a copy cut short).
    path = os.path.join(workdir, "teacher.keras")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    # 4. Moves it aside and redoes its phase (adversarial training only), then the
    #    Deadwood fit from its start (its backup came from the old teacher);
    #    killed in the fine-tune phase after epoch 3.
    out = _run_until(workdir, "Fine-tune phase", "Epoch 4/4")
    assert re.search(r"teacher\.keras cannot be trusted: its sha256 \w+\.\.\. differs .*"
                     r"Moved it to teacher\.keras\.corrupt-\d{8}T\d{6}; redoing the teacher "
                     "phase", out), out[-3000:]
    assert "found" in out and "teacher_natural.keras" in out
    assert "backup cannot be trusted: it was made from a previous teacher" in out
    assert "Deadwood, 4 epochs" in out
    assert len([n for n in os.listdir(workdir) if n.startswith("teacher.keras.corrupt-")]) == 1
    killed = _entries(workdir)
    # 5. Resumes the fine-tune phase; killed in the export (the evaluation was done).
    out = _run_until(workdir, "== Export", "")
    assert "Deadwood: resuming at epoch 4/4 from backup/epoch-0003.weights.h5" in out
    assert "Fine-tune phase: epochs 3-4, resumed at epoch 4" in out
    entries = _entries(workdir)
    resume = next(e for e in entries[len(killed):] if e["event"] == "resume")
    saved = [e for e in killed if e["event"] == "epoch_end" and e["epoch"] == 3][-1]
    for key in ("masks", "multipliers", "iterations", "sparsity"):  # exactly the saved state
        assert resume[key] == saved[key], key
    # 6. Finishes, the finished phases skipped.
    out = run_tool("train.py", *ARGS, f"--workdir={workdir}").stdout
    assert "Deadwood: found" in out and "phase done before" in out

    report = json.load(open(os.path.join(workdir, "report.json")))
    assert report["sparsity"]["zeros"] == round(0.8 * report["sparsity"]["size"])
    assert [int(h["epoch"]) for h in report["history"]] == [0, 1, 2, 3]
    assert report["history"][-1]["sparsity"] == pytest.approx(0.8, abs=1e-4)
    assert set(report["metrics"]) == {"teacher", "pruned"}
    assert report["export"]["max_abs_diff"] < 1e-4
    for name in ("report.md", "model.tflite", "sparsity_per_layer.png", "multipliers.png",
                 "accuracy_per_epoch.png", "hardest_examples.png"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0, name
    assert _half_written(workdir) == []
    backups = [n for n in os.listdir(workdir) if n.startswith("backup")]
    assert len(backups) == 1 and backups[0].startswith("backup.corrupt-")  # the stale one, kept
    assert os.path.getsize(os.path.join(workdir, "run.lock")) == 0  # released
    # Every recorded artefact matches its digest.
    manifest = json.load(open(os.path.join(workdir, "manifest.json")))["files"]
    assert {"teacher.keras", "teacher_natural.keras", "model.keras", "multipliers.npz"} == \
        set(manifest)
    for name, record in manifest.items():
        assert sha256(os.path.join(workdir, name)) == record["sha256"], name
    with Workdir(workdir, log=print):  # a clean release: no stale lock to take over
        pass
