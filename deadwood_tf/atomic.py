"""The one atomic write: a file (or directory) appears whole or not at all.

`write_file(path, write)` lets `write(tmp)` fill a temporary path next to
`path`, syncs it to disk, then moves it into place with `os.replace`. A kill
or a full disk (`ENOSPC`) leaves the previous file intact and no partial one;
the temporary path is removed on failure (a killed process leaves it: its
name starts with `TMP_PREFIX`, which `workdir.Workdir` cleans up and `*.json`
globs skip). Every writer of the pipeline, the benchmark and the export uses
it: `workdir.Workdir.save`, `write_json`, `save_model`, `export_tflite`.

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "row.json")
>>> write_json(path, {"b": 2, "a": 1})
>>> open(path).read()
'{\\n "a": 1,\\n "b": 2\\n}\\n'
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Callable

# Temporary files keep the target's name as a suffix (Keras insists on `.keras`
# and `.weights.h5`), behind a prefix that hides them and marks them for clean-up.
TMP_PREFIX = ".tmp-"


def temporary_path(path: str) -> str:
    """The temporary path `write_file` fills for `path`: same directory, this
    process's id and `TMP_PREFIX` in front of the name."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f"{TMP_PREFIX}{os.getpid()}-{name}")


def remove(path: str) -> None:
    """Deletes a file or a directory tree; nothing when `path` does not exist."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def _fsync_tree(path: str) -> None:
    paths = [path] if os.path.isfile(path) else [
        os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
    for p in paths:
        with open(p, "rb") as f:
            os.fsync(f.fileno())


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: str, write: Callable[[str], Any],
               before_replace: Callable[[str], None] | None = None) -> str:
    """Writes `path` atomically; returns it.

    Args:
      path: the target; its directory is created if missing.
      write: `write(tmp)` fills the temporary file or directory `tmp`.
      before_replace: called with `tmp` once it is synced, before the move
        (e.g. to record its digest first).

    Raises whatever `write`, `before_replace` or the file system raise (an
    OSError keeps its errno); `path` is then as it was before the call.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = temporary_path(path)
    try:
        write(tmp)
        _fsync_tree(tmp)
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, path)
        _fsync_dir(os.path.dirname(os.path.abspath(path)))
    except BaseException:
        remove(tmp)
        raise
    return path


def write_bytes(path: str, content: bytes) -> str:
    """`content` written to `path` atomically (`write_file`)."""
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(content)
    return write_file(path, write)


def write_json(path: str, obj, indent: int = 1, sort_keys: bool = True) -> None:
    """`obj` written to `path` as indented JSON (NumPy scalars as floats), atomically."""
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=indent, sort_keys=sort_keys, default=float)
            f.write("\n")
    write_file(path, write)


def save_model(model, path: str) -> str:
    """`model.save(path)` atomically (the temporary file keeps the `.keras` suffix)."""
    return write_file(path, model.save)
