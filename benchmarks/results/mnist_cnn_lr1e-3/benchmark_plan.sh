#!/bin/bash
# The plan of the first run (every method at lr 1e-3); its rows are in this folder.
# The order in which the reference protocol's test rows were run (most important first).
# Each command skips finished rows, so the whole script can be rerun after a stop.
# Settings were chosen before, on the validation split: tools/benchmark_validation.sh.
#   nohup tools/benchmark_plan.sh [WORKDIR] > runs/benchmark_plan.log 2>&1 &
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD
W=${1:-runs/benchmark}
B="python tools/benchmark.py --config=configs/benchmark_full.py --workdir=$W"
# Deadwood and its two controls: 5 seeds (0-4); ablations and peers: 3 (0-2).
S3="--config.seeds=0,1,2"
CORE=dense,dense_at,deadwood,gradual_magnitude_at,global_magnitude_at
ABL=deadwood_one_shot,deadwood_frozen,deadwood_scalar,deadwood_no_l1
PEERS=tfmot_at,hydra_global,hydra,pquant_pdp  # pquant_mdmm misses the target: see docs
$B --config.sparsities=0.95 --config.methods=$CORE
$B --config.sparsities=0.99 --config.methods=$CORE
$B --config.sparsities=0.9 --config.methods=$CORE
$B $S3 --config.sparsities=0.95 --config.methods=$ABL
$B $S3 --config.sparsities=0.99 --config.methods=$ABL
$B $S3 --config.sparsities=0.95 --config.methods=$PEERS
$B $S3 --config.sparsities=0.99 --config.methods=$PEERS
$B $S3 --config.sparsities=0.9 --config.methods=$PEERS
# Worst case (seed 0): Deadwood and the two best peers at each sparsity (about an hour
# a model on 2 shared cores; what finished is in the tables).
$B --worst_case=deadwood,hydra_global,gradual_magnitude_at --config.sparsities=0.95
$B --worst_case=deadwood,hydra_global,gradual_magnitude_at --config.sparsities=0.99
$B --worst_case=deadwood,hydra_global,gradual_magnitude_at --config.sparsities=0.9
# Channel rows (issue 12; the target is the fraction of MACs removed): seed 0 at 25/50/75%,
# then seeds 0-2 at 50%.
$B --config.seeds=0 --config.sparsities=0.25,0.5,0.75 --config.methods=deadwood_channel,l1_filter_at
$B --config.seeds=0 --config.sparsities=0.5 --config.methods=gradual_channel_at
$B $S3 --config.sparsities=0.5 --config.methods=deadwood_channel,l1_filter_at,gradual_channel_at
