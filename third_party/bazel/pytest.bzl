"""Macros that turn pytest modules into Bazel py_test targets.

Each test module becomes one py_test whose `main` is
//third_party/bazel:pytest_main.py; the module itself is passed as the first
argument, so pytest (not the module's __main__) collects and runs it.
"""

_RUNNER = "//third_party/bazel:pytest_main.py"

def pytest_test(
        name,
        src,
        deps = [],
        data = [],
        args = [],
        size = "medium",
        timeout = None,
        tags = [],
        **kwargs):
    """One py_test running `pytest src`.

    Args:
      name: target name.
      src: the test module (a label, usually "tests/test_x.py").
      deps: py_library deps (the library, shared test helpers, ...).
      data: extra runtime files.
      args: extra pytest arguments.
      size, timeout, tags: as for py_test.
      **kwargs: passed through to py_test.
    """
    native.py_test(
        name = name,
        srcs = [_RUNNER, src],
        main = _RUNNER,
        args = ["$(rootpath %s)" % src] + args,
        deps = deps,
        data = data,
        size = size,
        timeout = timeout,
        tags = tags,
        python_version = "PY3",
        srcs_version = "PY3",
        **kwargs
    )

def pytest_suite(
        srcs,
        deps = [],
        data = [],
        slow = [],
        sizes = {},
        deps_override = {},
        extra_deps = {},
        fast_size = "medium",
        fast_timeout = "moderate",
        slow_size = "large",
        slow_timeout = "long",
        fast_suite = "fast",
        slow_suite = "slow",
        **kwargs):
    """One pytest_test per module in `srcs`, plus `fast` and `slow` test_suites.

    The target for "tests/test_foo.py" is named "test_foo".

    Args:
      srcs: test modules, e.g. glob(["tests/test_*.py"]).
      deps: deps of every test.
      data: data of every test.
      slow: modules (paths as in srcs, or bare target names such as
        "test_foo") that are slow: they get slow_size/slow_timeout and the
        "slow" tag; all others get fast_size/fast_timeout and the "fast" tag.
      sizes: {module or target name: size} for fast tests whose size differs
        from fast_size (e.g. "small"); their timeout is Bazel's default for
        that size.  Slow tests always get slow_size.
      deps_override: {module or target name: [labels]} used instead of `deps`
        for that test (e.g. a narrower library target).
      extra_deps: {module or target name: [labels]} added to the deps of that
        one test only (e.g. a test that runs tools/ binaries or reads
        configs/), so other tests do not rerun when those files change.
      fast_size, fast_timeout, slow_size, slow_timeout: py_test size/timeout.
      fast_suite, slow_suite: names of the generated test_suites (None to
        skip one).
      **kwargs: passed through to every py_test.
    """
    fast_tests = []
    slow_tests = []
    known = {}
    for src in srcs:
        name = src.split("/")[-1]
        if name.endswith(".py"):
            name = name[:-len(".py")]
        known[src] = True
        known[name] = True
        is_slow = src in slow or name in slow
        size = sizes.get(src, sizes.get(name))
        if is_slow:
            size, timeout = slow_size, slow_timeout
        elif size:
            timeout = None  # Bazel's default for the size
        else:
            size, timeout = fast_size, fast_timeout
        pytest_test(
            name = name,
            src = src,
            deps = deps_override.get(src, deps_override.get(name, deps)) +
                   extra_deps.get(src, extra_deps.get(name, [])),
            data = data,
            size = size,
            timeout = timeout,
            tags = ["slow" if is_slow else "fast"],
            **kwargs
        )
        if is_slow:
            slow_tests.append(":" + name)
        else:
            fast_tests.append(":" + name)

    for what, entries in [
        ("slow", slow),
        ("sizes", sizes),
        ("deps_override", deps_override),
        ("extra_deps", extra_deps),
    ]:
        for entry in entries:
            if entry not in known:
                # A typo or a deleted module must not silently make a list stale.
                fail("pytest_suite: %s entry %r matches no module in srcs" % (what, entry))

    # An empty `tests` list in test_suite means "every test in the package
    # (matching `tags`)", so an empty group selects by its tag instead and
    # the suite still exists (and is empty).
    for suite, members, tag in [
        (fast_suite, fast_tests, "fast"),
        (slow_suite, slow_tests, "slow"),
    ]:
        if not suite:
            continue
        if members:
            native.test_suite(name = suite, tests = members)
        else:
            native.test_suite(name = suite, tags = [tag])
