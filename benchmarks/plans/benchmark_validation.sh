#!/bin/bash
# The validation sweep that chose Deadwood's defaults and the peers' settings
# (seed 0, 95% and 99%, the 1,000 held-out training digits; the test split is not read).
# Rows go to benchmarks/results/mnist_cnn/validation/<method>-<variant>_<sparsity>_seed0.json;
# `python tools/benchmark_tables.py` prints the sweep's table. Resumable.
#   nohup benchmarks/plans/benchmark_validation.sh [WORKDIR] > runs/benchmark_validation.log 2>&1 &
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD
W=${1:-runs/benchmark}
# Rounds 1-6 ran under the defaults of their time (lr 1e-3, dual step 0.2); explicit
# flags later on a line win, so each row reruns under the settings it was made with.
R1="--config.deadwood.learning_rate=1e-3 --config.deadwood.dual_step_size=0.2"
for S in 0.95 0.99; do
  B="python tools/benchmark.py --config=configs/benchmark_full.py --workdir=$W \
     --config.split=validation $R1 --config.seeds=0 --config.sparsities=$S"
  # Deadwood's candidates (the current defaults first), then the peers' learning rates.
  $B --config.methods=deadwood,gradual_magnitude_at,global_magnitude_at
  $B --config.methods=deadwood --variant=teacher --config.deadwood.robust_target=teacher
  $B --config.methods=deadwood --variant=dual1 --config.deadwood.dual_step_size=1.0
  $B --config.methods=deadwood --variant=rho10 --config.deadwood.sparsity_weight=10
  $B --config.methods=deadwood --variant=rho200 --config.deadwood.sparsity_weight=200
  $B --config.methods=deadwood --variant=gamma1 --config.deadwood.label_weight=1.0
  $B --config.methods=gradual_magnitude_at,global_magnitude_at --variant=lr3e-4 \
     --config.deadwood.learning_rate=3e-4
done
# Round 2: the best of round 1 (dual step 1.0) against the defaults on a second seed,
# and a larger step, to see whether the trend continues.
for S in 0.95 0.99; do
  B="python tools/benchmark.py --config=configs/benchmark_full.py --workdir=$W \
     --config.split=validation $R1 --config.seeds=0,1 --config.sparsities=$S"
  $B --config.methods=deadwood,gradual_magnitude_at
  $B --config.methods=deadwood --variant=dual1 --config.deadwood.dual_step_size=1.0
  $B --config.methods=deadwood --variant=dual3 --config.deadwood.dual_step_size=3.0
done
# Round 3: the peers' settings (95%, seed 0): each peer at its defaults and at two
# candidates, the step sizes its authors tune first. The best on validation PGD-20
# (clean breaking ties) becomes its setting in configs/benchmark_full.py, at every sparsity.
B="python tools/benchmark.py --config=configs/benchmark_full.py --workdir=$W \
   --config.split=validation $R1 --config.seeds=0 --config.sparsities=0.95"
$B --config.methods=tfmot_at,hydra_global,hydra,pquant_pdp
$B --config.methods=tfmot_at,pquant_pdp --variant=lr3e-4 --config.deadwood.learning_rate=3e-4
$B --config.methods=tfmot_at --variant=pe2 --config.tfmot.pruning_epochs=2
$B --config.methods=pquant_pdp --variant=eps0.6 --config.pquant.pdp.epsilon=0.6
$B --config.methods=hydra_global --variant=slr1e-2 --config.hydra.score_learning_rate=1e-2
$B --config.methods=hydra_global --variant=slr1e-4 --config.hydra.score_learning_rate=1e-4
$B --config.methods=hydra --variant=lr1e-3 --config.hydra_published.learning_rate=1e-3
$B --config.methods=hydra --variant=slr1e-2 --config.hydra_published.score_learning_rate=1e-2
# The lower learning rate lost for both peers that take one: try a higher one.
$B --config.methods=tfmot_at,pquant_pdp --variant=lr3e-3 --config.deadwood.learning_rate=3e-3
# Published HYDRA lost with both smaller step sizes: try a larger fine-tuning one.
$B --config.methods=hydra --variant=lr1e-1 --config.hydra_published.learning_rate=0.1
# lr 3e-3 won for the per-layer peers: the same candidate for Deadwood, its controls and
# HYDRA's global variant (whose fine-tuning runs at deadwood.learning_rate).
for S in 0.95 0.99; do
  B="python tools/benchmark.py --config=configs/benchmark_full.py --workdir=$W \
     --config.split=validation $R1 --config.seeds=0 --config.sparsities=$S"
  $B --config.methods=deadwood,gradual_magnitude_at,hydra_global --variant=lr3e-3 \
     --config.deadwood.learning_rate=3e-3
done
# lr 3e-3 won for every method at 95%: is the optimum higher still?
B="python tools/benchmark.py --config=configs/benchmark_full.py --workdir=$W \
   --config.split=validation $R1 --config.seeds=0 --config.sparsities=0.95"
$B --config.methods=deadwood,gradual_magnitude_at --variant=lr1e-2 --config.deadwood.learning_rate=1e-2
# lr 1e-2 won again at 95%: 1e-2 at 99%, 3e-2 at 95%, and 1e-2 for the peers that take it.
for S in 0.99; do
  B="python tools/benchmark.py --config=configs/benchmark_full.py --workdir=$W \
     --config.split=validation $R1 --config.seeds=0 --config.sparsities=$S"
  $B --config.methods=deadwood,gradual_magnitude_at --variant=lr1e-2 --config.deadwood.learning_rate=1e-2
done
B="python tools/benchmark.py --config=configs/benchmark_full.py --workdir=$W \
   --config.split=validation $R1 --config.seeds=0 --config.sparsities=0.95"
$B --config.methods=deadwood,gradual_magnitude_at --variant=lr3e-2 --config.deadwood.learning_rate=3e-2
$B --config.methods=hydra_global,tfmot_at,pquant_pdp --variant=lr1e-2 --config.deadwood.learning_rate=1e-2
# Round 7: Deadwood's own settings again, now at lr 1e-2 (round 1 ran at 1e-3), each a change
# from the then default (dual step 0.2). At 1e-2 the
# gradual control had caught up with Deadwood on validation; the candidates are METHOD.md's
# freedoms: dual step (larger, smaller, or none: the frozen ablation), the multipliers' cap
# (after one epoch some examples sit at the cap of 10), the robustness target, rho, a bound.
for S in 0.95 0.99; do
  B="python tools/benchmark.py --config=configs/benchmark_full.py --workdir=$W \
     --config.split=validation --config.seeds=0 --config.sparsities=$S \
     --config.deadwood.dual_step_size=0.2"
  $B --config.methods=deadwood_frozen --variant=lr1e-2
  $B --config.methods=deadwood --variant=lr1e-2-dual1 --config.deadwood.dual_step_size=1.0
  $B --config.methods=deadwood --variant=lr1e-2-dual3 --config.deadwood.dual_step_size=3.0
  $B --config.methods=deadwood --variant=lr1e-2-dual0.05 --config.deadwood.dual_step_size=0.05
  $B --config.methods=deadwood --variant=lr1e-2-max3 --config.deadwood.max_multiplier=3.0
  $B --config.methods=deadwood --variant=lr1e-2-teacher --config.deadwood.robust_target=teacher
  $B --config.methods=deadwood --variant=lr1e-2-rho10 --config.deadwood.sparsity_weight=10
  $B --config.methods=deadwood --variant=lr1e-2-rho200 --config.deadwood.sparsity_weight=200
  $B --config.methods=deadwood --variant=lr1e-2-rb0.3 --config.deadwood.robustness_bound=0.3
done
# (Round 7 continued, after the first results: the larger the dual step the higher PGD-20, so
# also dual step 10 and dual step 1 with a cap of 30, seed 0.)
for S in 0.95 0.99; do
  B="python tools/benchmark.py --config=configs/benchmark_full.py --workdir=$W \
     --config.split=validation --config.seeds=0 --config.sparsities=$S"
  $B --config.methods=deadwood --variant=lr1e-2-dual10 --config.deadwood.dual_step_size=10.0
  $B --config.methods=deadwood --variant=lr1e-2-dual1-max30 --config.deadwood.dual_step_size=1.0 \
     --config.deadwood.max_multiplier=30.0
done
# Round 8: the best of round 7 (dual step 3.0) against the then default (0.2) and the control
# on seeds 1 and 2. Rule fixed before: adopt it if its mean validation PGD-20 over the six
# rows (3 seeds x 95%, 99%) is higher and its clean accuracy not lower by more than 0.5.
# It was (83.95 against 82.37; clean 96.32 against 96.10): dual step 3.0 is the default since.
# (These rows ran before the change, so their variants name the settings they ran with.)
B="python tools/benchmark.py --config=configs/benchmark_full.py --workdir=$W \
   --config.split=validation --config.seeds=1,2 --config.sparsities=0.95,0.99"
$B --config.methods=deadwood --variant=lr1e-2-dual3 --config.deadwood.dual_step_size=3.0
$B --config.methods=deadwood --variant=lr1e-2 --config.deadwood.dual_step_size=0.2
$B --config.methods=gradual_magnitude_at --variant=lr1e-2
# PQuantML MDMM at lr 1e-2 (95%, seed 0): at its defaults and with a 100x faster multiplier
# ascent (and a 10x larger scale) it ended at sparsity 0.28, 0.25 and 0.06 for a target of
# 0.95; the runner refuses such a row (no file), so it has no row (docs: "What was not done").
B="python tools/benchmark.py --config=configs/benchmark_full.py --workdir=$W \
   --config.split=validation --config.seeds=0 --config.sparsities=0.95 --config.methods=pquant_mdmm"
$B --variant=lr1e-2
$B --variant=lr1e-2-clr1e-1 --config.pquant.mdmm.constraint_lr=0.1
$B --variant=lr1e-2-clr1e-1-scale100 --config.pquant.mdmm.constraint_lr=0.1 --config.pquant.mdmm.scale=100.0
