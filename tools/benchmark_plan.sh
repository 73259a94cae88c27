#!/bin/bash
# The order in which the reference protocol's rows were run (most important first).
# Each command skips finished rows, so the whole script can be rerun after a stop.
#   nohup tools/benchmark_plan.sh > runs/benchmark_plan.log 2>&1 &
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD
B="python tools/benchmark.py --config=configs/benchmark_full.py"
CORE=dense,dense_at,deadwood,gradual_magnitude_at,global_magnitude_at
ABL=deadwood_one_shot,deadwood_frozen,deadwood_scalar,deadwood_no_l1
$B --config.sparsities=0.95 --config.methods=$CORE
$B --config.sparsities=0.99 --config.methods=$CORE
$B --config.sparsities=0.95 --config.methods=$ABL
$B --config.sparsities=0.9 --config.methods=$CORE
$B --config.sparsities=0.99 --config.methods=$ABL
$B --config.sparsities=0.95 --config.methods=tfmot_at,hydra_global
