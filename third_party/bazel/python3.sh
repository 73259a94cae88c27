#!/bin/sh
# Python interpreter for this repository's Bazel py_binary/py_test targets
# (registered as the Python toolchain in //third_party/bazel:BUILD).
#
# It runs whatever `python3` is first on PATH (the "system" Python that has
# tensorflow, keras, numpy and pytest installed), so no machine-specific path
# is committed.  Set DEADWOOD_PYTHON to an interpreter to override it
# (pass it through with --test_env=DEADWOOD_PYTHON / --action_env, or put it in
# user.bazelrc).
if [ -n "${DEADWOOD_PYTHON:-}" ]; then
  exec "$DEADWOOD_PYTHON" "$@"
fi
# Bazel may run this with an unexported/minimal PATH; fall back to the usual
# places only if PATH is empty.
PATH="${PATH:-/usr/local/bin:/usr/bin:/bin}"
export PATH
exec python3 "$@"
