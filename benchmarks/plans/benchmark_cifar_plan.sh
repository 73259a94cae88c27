#!/bin/bash
# The cifar10k protocol's rows (configs/benchmark_cifar.py), in the order they were run.
# Each command skips finished rows: rerun the script after a stop.
#   nohup benchmarks/plans/benchmark_cifar_plan.sh [WORKDIR] > runs/benchmark_cifar.log 2>&1 &
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD
W=${1:-runs/benchmark}
B="python tools/benchmark.py --config=configs/benchmark_cifar.py --workdir=$W"
$B --config.methods=dense,dense_at,gradual_magnitude_at,global_magnitude_at
$B --config.methods=deadwood
$B --config.methods=deadwood_channel,l1_filter_at,deadwood --config.sparsities=0.5
$B --config.methods=deadwood_channel,l1_filter_at --config.sparsities=0.25,0.75
$B --config.methods=gradual_channel_at --config.sparsities=0.5
$B --config.methods=deadwood --config.sparsities=0.25,0.75
# The best MNIST peer at 95% (issue 11), with its validation-chosen settings.
$B --config.methods=hydra_global --config.sparsities=0.95
# Widths aligned to multiples of 8 (prune.round_to; issue 12's latency target).
$B --config.methods=deadwood_channel_r8,l1_filter_at_r8 --config.sparsities=0.5
