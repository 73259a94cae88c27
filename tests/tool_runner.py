"""Running tools/*.py as subprocesses on a tiny config, for test_tools and test_fault_injection."""

import os
import subprocess
import sys

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


def run_tool(tool, *args, timeout=600, check=True):
    # A name is a user-facing tool (tools/NAME); a path is any script of the repository.
    script = tool if "/" in tool else os.path.join("tools", tool)
    proc = subprocess.run([sys.executable, script, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=ENV)
    if check and proc.returncode != 0:
        raise AssertionError(f"{tool} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-5000:]}")
    return proc
