"""The README's `model.fit` example runs as printed, on a slice of the digits and
fewer epochs (the only changes, each checked to apply exactly once)."""

import os
import re

import pytest
import sklearn.datasets

import deadwood_tf as dw
from conftest import ROOT

EXAMPLE = "## Example: `model.fit` with `DeadwoodCallback`"
# The example's settings -> the test's: seconds instead of a minute.
SHORTER = {
    "teacher.fit(x, y, epochs=15,": "teacher.fit(x, y, epochs=2,",
    "model.fit(x, y, epochs=8,": "model.fit(x, y, epochs=3,",
    "target_sparsity=0.9, prune_epoch=4)": "target_sparsity=0.9, prune_epoch=2)",
    "dw.PGD(0.1, steps=20)": "dw.PGD(0.1, steps=3)",
}


def readme_example():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    assert EXAMPLE in text, f"README.md has no section {EXAMPLE!r}"
    section = text[text.index(EXAMPLE):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no ```python block after {EXAMPLE!r} in README.md"
    return match.group(1)


def test_readme_fit_example_runs(tmp_path, monkeypatch, capsys):
    code = readme_example()
    for old, new in SHORTER.items():
        assert code.count(old) == 1, f"the README example changed: update SHORTER ({old!r})"
        code = code.replace(old, new)
    digits = sklearn.datasets.load_digits()
    digits.images, digits.target = digits.images[:320], digits.target[:320]
    monkeypatch.setattr(sklearn.datasets, "load_digits", lambda: digits)
    monkeypatch.chdir(tmp_path)  # the example writes digits.tflite where it runs

    namespace = {"__name__": "readme_example"}
    exec(compile(code, "README.md", "exec"), namespace)

    model = namespace["model"]
    assert len(namespace["x"]) == 320  # it ran on the slice
    assert dw.sparsity_report(model).sparsity == pytest.approx(0.9, abs=1e-3)
    assert dw.sparsity_report(namespace["plain"]).sparsity == pytest.approx(0.9, abs=1e-3)
    assert os.path.getsize(tmp_path / "digits.tflite") > 0
    printed = capsys.readouterr().out
    assert "pgd3_linf_0.1" in printed and "max_abs_diff" in printed, printed[-2000:]
