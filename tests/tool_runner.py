"""Running tools/*.py on a tiny config, for test_tools and test_fault_injection.

Each run is a process of its own, as `python tools/X.py ARGS` would be, but
forked from a server process (multiprocessing's forkserver) that has already
imported TensorFlow, Keras and deadwood_tf: a run then starts in about a
second instead of paying the five to ten seconds of TensorFlow's import. The
server imports only; it never runs a TensorFlow op, so each run initialises
TensorFlow's runtime for itself, as a fresh process does. Flags are parsed
afresh in each run (the server never imports a tool or a deadwood_tf.cli
module, where they are defined).
"""

import atexit
import multiprocessing
import multiprocessing.forkserver
import os
import runpy
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--config=configs/digits_cnn.py",
    "--config.data.num_train=640",
    "--config.model.width=16",
    "--config.teacher.epochs=10",
    "--config.teacher.adversarial_epochs=1",
    "--config.prune.solve_epochs=2",
    "--config.prune.finetune_epochs=1",
    "--config.eval.num_examples=100",
    "--config.eval.per_epoch_examples=50",
    "--config.eval.pgd_steps=5",
]
# The deadwood_tf of this checkout, not whichever copy is installed.
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
       "PYTHONPATH": os.pathsep.join([ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])}
# What every tool imports first; importing (not running) TensorFlow is fork-safe.
PRELOAD = ["numpy", "tensorflow", "keras", "deadwood_tf", "deadwood_tf.train",
           "deadwood_tf.report", "ml_collections", "absl.app"]

_context = None


def _forkserver():
    global _context
    if _context is None:
        if ROOT not in sys.path:  # the server imports deadwood_tf from this checkout
            sys.path.insert(0, ROOT)
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
        # The server listens on a Unix socket in a temporary folder, and a socket's path
        # has at most 107 bytes: under `bazel test`, TMPDIR is far too deep for that.
        saved = tempfile.tempdir
        if len(tempfile.gettempdir()) > 40:
            tempfile.tempdir = "/tmp"
        try:
            multiprocessing.forkserver.ensure_running()
        finally:
            tempfile.tempdir = saved
    return _context


def _main(script, args, env, stdout, stderr):
    """In the forked process: what `python SCRIPT ARGS` does, output to the given files."""
    for fd, path in ((1, stdout), (2, stderr)):
        target = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.dup2(target, fd)
        os.close(target)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(ROOT)
    sys.argv = [script, *args]
    sys.path[0:0] = [os.path.dirname(os.path.abspath(script))]
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        atexit._run_exitfuncs()  # multiprocessing ends its processes with os._exit
        sys.stdout.flush()
        sys.stderr.flush()


class ToolProcess:
    """A started tool: `pid`, `kill()`, `wait(timeout)` -> returncode (-9 when SIGKILLed),
    `lines()` (its output as it comes), `output()` -> (stdout, stderr) once it ended."""

    def __init__(self, tool, args, merge_stderr=False):
        # A name is a user-facing tool (tools/NAME); a path is any script of the repository.
        script = tool if "/" in tool else os.path.join("tools", tool)
        self._folder = tempfile.TemporaryDirectory()
        self._stdout = os.path.join(self._folder.name, "stdout")
        self._stderr = self._stdout if merge_stderr else os.path.join(self._folder.name, "stderr")
        self.process = _forkserver().Process(
            target=_main, args=(script, list(args), ENV, self._stdout, self._stderr))
        self.process.start()
        self.pid = self.process.pid

    def kill(self):
        self.process.kill()

    def wait(self, timeout=None):
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired(self.process.name, timeout)
        return self.process.exitcode

    @property
    def returncode(self):
        return self.process.exitcode

    def lines(self):
        return follow(self._stdout, lambda: self.process.exitcode is not None)

    def output(self):
        return tuple(open(path, errors="replace").read() if os.path.exists(path) else ""
                     for path in (self._stdout, self._stderr))

    def close(self):
        self._folder.cleanup()


def start_tool(tool, *args):
    """Starts a tool, its stdout and stderr in one stream (`lines()`)."""
    return ToolProcess(tool, args, merge_stderr=True)


def run_tool(tool, *args, timeout=600, check=True):
    proc = ToolProcess(tool, args)
    try:
        try:
            returncode = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(60)
            raise
        stdout, stderr = proc.output()
    finally:
        proc.close()
    if check and returncode != 0:
        raise AssertionError(f"{tool} failed ({returncode}):\n{stdout[-3000:]}\n"
                             f"{stderr[-5000:]}")
    return subprocess.CompletedProcess([tool, *args], returncode, stdout, stderr)


def follow(path, stop, poll=0.05):
    """Yields the lines written to `path` until `stop()` is true and no more come."""
    while not os.path.exists(path):
        if stop():
            return
        time.sleep(poll)
    with open(path, errors="replace") as f:
        pending = ""
        while True:
            chunk = f.readline()
            if chunk:
                pending += chunk
                if pending.endswith("\n"):
                    yield pending
                    pending = ""
                continue
            if stop():
                rest = pending + f.read()
                if rest:
                    yield rest
                return
            time.sleep(poll)
