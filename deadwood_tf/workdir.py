"""A work directory that one run holds at a time and whose checkpoints verify themselves.

`Workdir(path)` gives the pipeline three guarantees:

- **One run at a time.** `lock()` takes an exclusive `fcntl.flock` on
  `run.lock` and writes the holder (pid, host, start time, command) into it.
  A second run on the same directory stops at once with a `WorkdirInUseError`
  naming the holder, having changed nothing. The kernel drops the lock when
  its process dies, however it dies, so a lock left by a killed run is taken
  over (and the log says whose it was).
- **Atomic writes.** `save(name, write)` lets `write` fill a temporary file
  next to the target, syncs it, records its sha256 in `manifest.json`, then
  moves it into place with `os.replace`. A kill or a full disk (`ENOSPC`)
  leaves the previous artefact intact; the error says so.
- **Verified reuse.** `load(name, loader, redo)` checks the recorded sha256
  and that the file loads. A file that fails either is moved aside to
  `NAME.corrupt-<time>` and `None` is returned, so the caller redoes the
  phase; the log says what was wrong, where the file went and what is redone.

`BackupCallback` is the per-epoch backup of a running fit (model and
optimizer variables) on the same terms; it replaces
`keras.callbacks.BackupAndRestore`, whose in-place writes a kill can tear.

Example:

>>> import tempfile
>>> with Workdir(tempfile.mkdtemp(), log=lambda m: None) as wd:
...     _ = wd.save("note.txt", lambda tmp: open(tmp, "w").write("hello"))
...     wd.load("note.txt", lambda p: open(p).read(), redo="rewriting it")
'hello'
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import socket
import sys
import time
from typing import Any, Callable

import keras

from deadwood_tf import atomic
from deadwood_tf.atomic import TMP_PREFIX

LOCK_NAME = "run.lock"
MANIFEST_NAME = "manifest.json"
# Temporary names older versions used (`report.json.tmp`, `x.tmp.keras`, `*.tflite.tmp`).
_OLD_TMP = re.compile(r"\.tmp(\.|$)")


class WorkdirInUseError(RuntimeError):
    """Another live run holds the work directory."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Workdir:
    """A run's directory: its lock, its manifest of digests, atomic saves.

    Args:
      path: the directory (created if missing).
      log: where the messages about locks, resumes and moved-aside files go.
    """

    def __init__(self, path: str, log: Callable[[str], None] = print):
        self.path = os.path.abspath(path)
        self.log = log
        self._lock_fd = None
        self._files: dict[str, dict] = {}

    # ------------------------------------------------------------------ lock

    def __enter__(self) -> "Workdir":
        self.lock()
        return self

    def __exit__(self, *exc) -> None:
        self.unlock()

    @property
    def lock_path(self) -> str:
        return os.path.join(self.path, LOCK_NAME)

    def lock(self) -> None:
        """Takes the directory, or raises WorkdirInUseError having changed nothing.

        Then removes the temporary files a killed run left and reads the manifest.
        """
        os.makedirs(self.path, exist_ok=True)
        # No O_TRUNC: the holder's record must survive a failed attempt.
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_record(fd)
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise WorkdirInUseError(
                f"The work directory {self.path} is in use by another run: "
                f"{_describe(holder)} (lock file {self.lock_path}). Nothing was changed. "
                "Wait for that run to end or stop it, or pass another --workdir.") from None
        previous = _read_record(fd)
        if previous:
            self.log(f"deadwood_tf: taking over the lock of {self.path}: the run that held it "
                     f"({_describe(previous)}) is gone without releasing it")
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now(),
                  "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(fd)
        self._lock_fd = fd
        self._clean_tmp()
        self._read_manifest()

    def unlock(self) -> None:
        """Releases the directory (an empty lock file means a free directory)."""
        if self._lock_fd is None:
            return
        fd, self._lock_fd = self._lock_fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _clean_tmp(self) -> None:
        for d, dirs, files in os.walk(self.path):
            # A worker's own directory (multi-worker runs) is that worker's to clean.
            dirs[:] = [n for n in dirs if not os.path.exists(os.path.join(d, n, LOCK_NAME))]
            for name in [*files, *dirs]:
                if name.startswith(TMP_PREFIX) or _OLD_TMP.search(name):
                    atomic.remove(os.path.join(d, name))
                    rel = os.path.relpath(os.path.join(d, name), self.path)
                    self.log(f"deadwood_tf: removed {rel}, a temporary file an interrupted "
                             "run left")

    # -------------------------------------------------------------- manifest

    def _read_manifest(self) -> None:
        path = os.path.join(self.path, MANIFEST_NAME)
        self._files = {}
        if not os.path.exists(path):
            return
        try:
            with open(path) as f:
                self._files = dict(json.load(f)["files"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            dest = self._move_aside(MANIFEST_NAME)
            self.log(f"deadwood_tf: {MANIFEST_NAME} is unreadable ({type(e).__name__}: {e}); "
                     f"moved it to {os.path.basename(dest)}; no artefact can be verified, "
                     "so each will be checked by loading it")

    def _write_manifest(self) -> None:
        def write(tmp):
            with open(tmp, "w") as f:
                json.dump({"version": 1, "files": self._files}, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
        self._replace(MANIFEST_NAME, write, MANIFEST_NAME)

    def recorded(self, prefix: str = "") -> list[str]:
        """Names recorded in the manifest (those under `prefix`)."""
        return sorted(n for n in self._files if n.startswith(prefix))

    def forget(self, name: str) -> None:
        """Drops `name` (and, for a directory, what is under it) from the manifest."""
        gone = [n for n in self._files if n == name or n.startswith(name.rstrip("/") + "/")]
        for n in gone:
            del self._files[n]
        if gone:
            self._write_manifest()

    # ---------------------------------------------------------- save / load

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def _replace(self, name: str, write: Callable[[str], Any], what: str,
                 before_replace: Callable[[str], None] | None = None) -> None:
        path = self.file(name)
        try:
            atomic.write_file(path, write, before_replace)
        except OSError as e:
            tmp = atomic.temporary_path(path)
            reason = os.strerror(e.errno) if e.errno else str(e)
            code = errno.errorcode.get(e.errno, "no errno")
            previous = "is intact" if os.path.exists(path) else "did not exist"
            fix = "Free space" if e.errno == errno.ENOSPC else "Fix the cause"
            raise OSError(
                e.errno, f"Could not save {what} in {self.path}: {reason} ({code}) while "
                f"writing {os.path.basename(tmp)}. The previous {name} {previous}; nothing was "
                f"replaced. {fix} and rerun the same command: the run resumes from its last "
                f"verified checkpoint. Cause: {e}") from e

    def save(self, name: str, write: Callable[[str], Any]) -> str:
        """Writes `name` atomically: `write(tmp_path)` fills a temporary file (or
        directory), whose sha256 is recorded before it replaces `name`.

        Returns the artefact's path. Raises OSError (its errno kept, e.g. ENOSPC)
        saying what happened; the previous artefact is then intact.
        """
        previous = self._files.get(name)

        def record(tmp):
            self._files[name] = {"sha256": sha256(tmp), "bytes": os.path.getsize(tmp),
                                 "written": _now()}
            self._write_manifest()  # first: a kill after it leaves a file the digest rejects
        try:
            self._replace(name, write, name, before_replace=record)
        except OSError:
            if previous is None:
                self._files.pop(name, None)
            else:
                self._files[name] = previous
            raise
        return self.file(name)

    def save_model(self, model: keras.Model, name: str) -> str:
        """`model.save` as `save` does it."""
        return self.save(name, model.save)

    def verify(self, name: str) -> str | None:
        """Why `name` cannot be trusted ("" when its recorded sha256 matches), or None
        when the manifest records nothing for it."""
        record = self._files.get(name)
        if record is None:
            return None
        found = sha256(self.file(name))
        if found != record["sha256"]:
            return (f"its sha256 {found[:12]}... differs from the one recorded when it was "
                    f"written ({record['sha256'][:12]}...)")
        return ""

    def load(self, name: str, loader: Callable[[str], Any], redo: str) -> Any:
        """`loader(path)` of a verified `name`, or None when there is nothing to reuse.

        Missing: None. Recorded digest mismatched, or `loader` fails: the file
        is moved aside to `name.corrupt-<time>`, the log says why and `redo`
        (what the caller does instead), and None is returned. A file without a
        recorded digest (written by an older version) is reused if it loads,
        and its digest recorded.
        """
        path = self.file(name)
        if not os.path.exists(path):
            if name in self._files:  # deleted, or a kill between the record and the move
                self.log(f"deadwood_tf: {name} is recorded in {MANIFEST_NAME} but missing; {redo}")
                self.forget(name)
            return None
        problem = self.verify(name)
        if not problem:
            try:
                obj = loader(path)
            except Exception as e:  # noqa: BLE001 - any failure to load means: redo
                problem = f"it does not load ({type(e).__name__}: {str(e)[:300]})"
            else:
                if problem is None:
                    self.log(f"deadwood_tf: {name} has no recorded digest (an older run wrote "
                             "it); it loads, so it is kept and its digest recorded")
                    self._files[name] = {"sha256": sha256(path), "bytes": os.path.getsize(path),
                                         "written": "unknown"}
                    self._write_manifest()
                return obj
        self.quarantine(name, problem, redo)
        return None

    def _move_aside(self, name: str) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        dest, k = f"{self.file(name)}.corrupt-{stamp}", 1
        while os.path.lexists(dest):
            dest, k = f"{self.file(name)}.corrupt-{stamp}-{k}", k + 1
        os.replace(self.file(name), dest)
        return dest

    def quarantine(self, name: str, reason: str, redo: str) -> str:
        """Moves `name` aside to `name.corrupt-<time>`, forgets it and logs why.

        Returns the new path."""
        dest = self._move_aside(name)
        self.forget(name)
        self.log(f"deadwood_tf: {name} cannot be trusted: {reason}. Moved it to "
                 f"{os.path.relpath(dest, self.path)}; {redo}.")
        return dest

    def discard(self, name: str) -> None:
        """Deletes `name` (a file or directory) and its records: a backup no longer needed."""
        self.forget(name)
        atomic.remove(self.file(name))


def _read_record(fd: int) -> dict:
    try:
        raw = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        return json.loads(raw) if raw else {}
    except (OSError, ValueError):
        return {"unreadable": True}


def _describe(record: dict) -> str:
    if not record or record.get("unreadable"):
        return "holder unknown (the lock file holds no readable record)"
    return (f"pid {record.get('pid')} on host {record.get('host')}, started "
            f"{record.get('started')} ({record.get('command', '')})")


_EPOCH_FILE = re.compile(r"epoch-(\d+)\.weights\.h5$")


class BackupCallback(keras.callbacks.Callback):
    """Per-epoch backup of a running fit, written atomically with its digest.

    The state is the model's `save_weights` (layer and optimizer variables:
    masks, multipliers and violation buffers included), one file per epoch
    `NAME/epoch-<k>.weights.h5`; the previous epoch's file is deleted only once
    the new one is in place. Use it in three steps:

        backup = BackupCallback(workdir, "backup")
        start = backup.resume_epoch()   # verifies; 0 when nothing to resume
        model.fit(..., initial_epoch=start, callbacks=[..., backup])
        ... save the phase's result ...; backup.discard()

    A backup whose digest does not match, or that does not load, is moved
    aside (`NAME.corrupt-<time>`) and the fit starts over; the log says so.
    """

    def __init__(self, workdir: Workdir, name: str):
        super().__init__()
        self.workdir, self.name = workdir, name
        self.initial_epoch = 0

    def _key(self, epoch: int) -> str:
        return f"{self.name}/epoch-{epoch:04d}.weights.h5"

    def resume_epoch(self, redo: str = "this fit starts over") -> int:
        """The number of epochs the verified backup holds (0: none)."""
        wd, directory = self.workdir, self.workdir.file(self.name)
        epochs = sorted((int(_EPOCH_FILE.search(n).group(1)) for n in wd.recorded(self.name + "/")
                         if _EPOCH_FILE.search(n)), reverse=True)
        for epoch in epochs:
            key = self._key(epoch)
            problem = wd.verify(key) if os.path.exists(wd.file(key)) else "it is missing"
            if not problem:
                self.initial_epoch = epoch
                return epoch
            wd.log(f"deadwood_tf: {key} cannot be trusted: {problem}")
            wd.forget(key)
        self.initial_epoch = 0
        if os.path.exists(directory) and os.listdir(directory):
            wd.quarantine(self.name, "it holds no verified backup (none recorded, or every "
                          "recorded one is damaged)", redo)
        return 0

    @property
    def path(self) -> str:
        return self.workdir.file(self._key(self.initial_epoch))

    def on_train_begin(self, logs=None):
        if not self.initial_epoch:
            return
        model = self.model
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)  # so its slots load too
        try:
            model.load_weights(self.path)
        except Exception as e:  # noqa: BLE001
            dest = self.workdir.quarantine(
                self.name, f"{os.path.basename(self.path)} does not load into this model "
                f"({type(e).__name__}: {str(e)[:300]}); was the config changed since it was "
                "written?", "rerun to start this fit over")
            raise RuntimeError(f"The backup {self.path} does not load into this model; moved "
                               f"to {dest}. Rerun the same command to start this fit over.") from e

    def on_epoch_end(self, epoch, logs=None):
        old = [n for n in self.workdir.recorded(self.name + "/") if n != self._key(epoch + 1)]
        self.workdir.save(self._key(epoch + 1), self.model.save_weights)
        for n in old:
            self.workdir.discard(n)

    def discard(self) -> None:
        """Deletes the backup once the phase's result is saved."""
        self.workdir.discard(self.name)
