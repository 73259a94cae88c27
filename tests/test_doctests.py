"""Every `>>>` example in deadwood_tf's docstrings runs and prints what it shows.

Illustrations that need objects the reader brings (`model`, `x_test`) are
written as plain indented code, without prompts; an example with prompts is
a promise that it runs as it stands.
"""

import doctest
import importlib
import os
import pkgutil

import pytest

import deadwood_tf

CLI = "deadwood_tf.cli."  # absl flags: each defines its own, one per process
MODULES = sorted(m.name for m in pkgutil.walk_packages(deadwood_tf.__path__, "deadwood_tf.")
                 if not m.name.startswith(CLI))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"


def test_cli_modules_have_no_prompts():
    folder = os.path.join(os.path.dirname(deadwood_tf.__file__), "cli")
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                assert ">>>" not in f.read(), f"deadwood_tf/cli/{name}: its doctests never run"


def test_the_list_of_modules_is_complete():
    assert {"deadwood_tf.prune", "deadwood_tf.export", "deadwood_tf.benchmarks.runner"} <= \
        set(MODULES)
