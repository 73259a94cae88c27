"""The API reference, generated from the docstrings with pdoc, builds without a warning.

    pdoc -o /tmp/api deadwood_tf deadwood_tf.prune ...     # to read it; not committed
"""

import pathlib
import pkgutil
import warnings

import pytest

pdoc = pytest.importorskip("pdoc", reason="pip install -e .[test] installs pdoc")
import pdoc.extract  # noqa: E402



def specs():
    """Every module but the command-line mains (they define absl flags at import, one
    set per process, and are documented by --help), each named once: a package's spec
    also brings the submodules its `__all__` lists."""
    import deadwood_tf

    names = ["deadwood_tf", *sorted(
        m.name for m in pkgutil.walk_packages(deadwood_tf.__path__, "deadwood_tf.")
        if not m.name.startswith("deadwood_tf.cli"))]
    out, covered = [], set()
    for name in names:
        if name not in covered:
            out.append(name)
            covered.update(pdoc.extract.walk_specs([name]))
    return out


def test_api_reference_builds_without_warnings(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*specs(), output_directory=tmp_path)
    from_pdoc = [f"{w.category.__name__}: {w.message}" for w in caught
                 if pathlib.Path(w.filename).parent.name == "pdoc" or "/pdoc/" in w.filename]
    assert not from_pdoc, "\n".join(from_pdoc)
    pages = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.html")}
    for module in ("deadwood_tf", "deadwood_tf/prune", "deadwood_tf/export",
                   "deadwood_tf/deadwood_model", "deadwood_tf/benchmarks/runner"):
        assert f"{module}.html" in pages, sorted(pages)
    assert not any(p.startswith("deadwood_tf/cli") for p in pages)
    prune = (tmp_path / "deadwood_tf" / "prune.html").read_text(encoding="utf-8")
    assert "apply_sparsity" in prune and "strip_pruning" in prune
