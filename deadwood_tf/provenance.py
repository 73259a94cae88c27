"""Where a result came from: library versions, the machine, a file's commit.

Every report and benchmark row records `versions()` and `machine()`; a
search's rows record `commit_of(search_file)`.
"""

from __future__ import annotations

import os
import platform
import subprocess

from deadwood_tf.version import VERSION


def versions() -> dict:
    """Python, TensorFlow, Keras and deadwood_tf versions, and those of the
    optional libraries found (cleverhans, LiteRT, tfmot)."""
    import keras
    import tensorflow as tf

    out = {"python": platform.python_version(), "tensorflow": tf.__version__,
           "keras": keras.__version__, "deadwood_tf": VERSION}
    try:
        from importlib.metadata import version

        for name in ("cleverhans", "ai-edge-litert", "tensorflow-model-optimization"):
            out[name] = version(name)
    except Exception:  # metadata missing in odd installs: versions are informative only
        pass
    return out


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else `platform.processor()`."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def machine() -> dict:
    """The platform, processor, CPU name and CPU count of this machine."""
    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpu": cpu_name(), "cpu_count": os.cpu_count()}


def commit_of(path: str, what: str = "file") -> str:
    """The git commit that last changed `path`.

    Raises:
      ValueError: `path` (named as `what` in the message) is uncommitted or
        changed since its last commit: what ran would not be what the commit holds.
    """
    folder = os.path.dirname(os.path.abspath(path)) or "."
    git = lambda *a: subprocess.run(["git", *a], cwd=folder, capture_output=True,  # noqa: E731
                                    text=True)
    status = git("status", "--porcelain", "--", os.path.abspath(path))
    commit = git("log", "-1", "--format=%H", "--", os.path.abspath(path)).stdout.strip()
    if status.returncode != 0 or status.stdout.strip() or not commit:
        raise ValueError(
            f"Invalid {what} {path!r}: commit it, unmodified, before using it (what it "
            "produces records its commit, so a reader can check what ran). "
            f"git says: {(status.stdout or status.stderr).strip() or 'not committed'}")
    return commit
