"""The library's shape, checked on its syntax tree: short functions, no import
cycle, and no use of another module's private names outside compat.py."""

import ast
import os

import pytest

from conftest import ROOT

PACKAGE = os.path.join(ROOT, "deadwood_tf")
MAX_LINES = 80
# Keras' and TensorFlow's private attributes are reached through compat.py only.
COMPAT = "deadwood_tf.compat"


def _modules():
    out = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                with open(path) as f:
                    out[".".join(parts)] = ast.parse(f.read(), path)
    return out


MODULES = _modules()


def long_functions(modules, limit=MAX_LINES):
    return sorted(f"{name}.{node.name} ({node.end_lineno - node.lineno + 1} lines)"
                  for name, tree in modules.items() for node in ast.walk(tree)
                  if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.end_lineno - node.lineno + 1 > limit)


def _imported(name, node, modules):
    """The package modules an import node brings in (function-level ones included)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in modules}
    if not isinstance(node, ast.ImportFrom) or not node.module:
        return set()
    base = node.module
    if node.level:  # relative import
        base = ".".join(name.split(".")[:-node.level] + [node.module])
    out = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules}
    return out | ({base} if base in modules and base != "deadwood_tf" else set())


def import_graph(modules):
    return {name: {m for node in ast.walk(tree) for m in _imported(name, node, modules)} - {name}
            for name, tree in modules.items()}


def cycles(graph):
    """Every strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def private_uses(modules):
    """`module._name` reached from another module, and private attributes of objects
    that are not the module's own (`self`, `cls`), outside compat.py."""
    out = []
    for name, tree in modules.items():
        if name == COMPAT:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("deadwood_tf"):
                out += [f"{name}: from {node.module} import {a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name)
                             and node.value.id in ("self", "cls"))
                    and not (isinstance(node.value, ast.Call)
                             and getattr(node.value.func, "id", "") == "super")):
                out.append(f"{name}:{node.lineno} .{node.attr}")
    return out


def test_no_function_is_longer_than_80_lines():
    assert long_functions(MODULES) == []


def test_no_import_cycle():
    assert cycles(import_graph(MODULES)) == []


def test_no_private_name_of_another_module_outside_compat():
    assert private_uses(MODULES) == []


@pytest.mark.parametrize("source, check, expected", [
    ("def f():\n" + "    x = 1\n" * 80, long_functions, ["m.f (81 lines)"]),
    ("def f():\n" + "    x = 1\n" * 79, long_functions, []),
    ("import other\nother._hidden()\n", private_uses, ["m:2 ._hidden"]),
    ("class A:\n    def f(self):\n        return self._own\n", private_uses, []),
    ("class A(B):\n    def f(self):\n        return super()._f()\n", private_uses, []),
])
def test_the_checks_catch_what_they_claim(source, check, expected):
    assert check({"m": ast.parse(source)}) == expected


def test_the_cycle_check_sees_function_level_imports():
    a = ast.parse("def f():\n    from deadwood_tf import b\n")
    b = ast.parse("from deadwood_tf import a\n")
    modules = {"deadwood_tf.a": a, "deadwood_tf.b": b}
    assert cycles(import_graph(modules)) == [["deadwood_tf.a", "deadwood_tf.b"]]
