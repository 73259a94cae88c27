#!/bin/bash
# The order in which the reference protocol's test rows are run (most important first).
# Each command skips finished rows, so the whole script can be rerun after a stop.
# Settings were chosen before, on the validation split: benchmarks/plans/benchmark_validation.sh.
# (The first run, every method at lr 1e-3, is in benchmarks/results/mnist_cnn_lr1e-3/.)
#   nohup benchmarks/plans/benchmark_plan.sh [WORKDIR] > runs/benchmark_plan.log 2>&1 &
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD
W=${1:-runs/benchmark}
B="python tools/benchmark.py --config=configs/benchmark_full.py --workdir=$W"
# Seeds 0-2 first (the issue's minimum), then 3-4 for Deadwood and its control.
S3="--config.seeds=0,1,2"
CORE=dense,dense_at,deadwood,gradual_magnitude_at,global_magnitude_at
ABL=deadwood_one_shot,deadwood_frozen,deadwood_scalar,deadwood_no_l1
PEERS=hydra_global,tfmot_at,pquant_pdp,hydra  # pquant_mdmm misses the target: see docs
$B $S3 --config.sparsities=0.95 --config.methods=$CORE
$B $S3 --config.sparsities=0.95 --config.methods=$PEERS
$B $S3 --config.sparsities=0.99 --config.methods=$CORE
$B $S3 --config.sparsities=0.9 --config.methods=$CORE
$B $S3 --config.sparsities=0.99 --config.methods=$PEERS
$B $S3 --config.sparsities=0.9 --config.methods=$PEERS
$B --config.seeds=3,4 --config.sparsities=0.95,0.99,0.9 --config.methods=deadwood,gradual_magnitude_at
$B --config.seeds=3,4 --config.sparsities=0.95,0.99,0.9 --config.methods=global_magnitude_at
$B $S3 --config.sparsities=0.95,0.99 --config.methods=$ABL
# Seeds 3-4 for every peer and ablation: 5 seeds for every row.
$B --config.seeds=3,4 --config.sparsities=0.95,0.99,0.9 --config.methods=$PEERS
$B --config.seeds=3,4 --config.sparsities=0.95,0.99 --config.methods=$ABL
# Worst case (seed 0): Deadwood and the two best peers at each sparsity by mean PGD-20
# (about an hour a model on 2 shared cores; what finished is in the tables).
$B --worst_case=deadwood,global_magnitude_at,hydra_global --config.sparsities=0.95
$B --worst_case=deadwood,gradual_magnitude_at,global_magnitude_at --config.sparsities=0.99
$B --worst_case=deadwood,global_magnitude_at,pquant_pdp --config.sparsities=0.9
# Channel rows (issue 12; the target is the fraction of MACs removed).
$B --config.seeds=0 --config.sparsities=0.25,0.5,0.75 \
   --config.methods=deadwood_channel,l1_filter_at,gradual_channel_at,l1_filter_at_r8
$B --config.seeds=0,1,2,3,4 --config.sparsities=0.5 \
   --config.methods=deadwood_channel,l1_filter_at,gradual_channel_at,deadwood_channel_r8,l1_filter_at_r8
