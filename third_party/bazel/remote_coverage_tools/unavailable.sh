#!/bin/sh
echo "remote_coverage_tools is an offline stub (third_party/bazel/remote_coverage_tools);" >&2
echo "'bazel coverage' is not supported in this setup. Use pytest-cov instead." >&2
exit 1
