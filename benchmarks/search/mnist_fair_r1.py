"""Round 1 of the fair MNIST comparison: one search, fixed before any of its rows.

Every contender gets 8 candidates: its learning rate and its own main settings,
nothing else changed from `configs/benchmark_full.py` (same data, split,
architecture, dense models per seed, training attack and 6-epoch budget).
Candidates run on the validation split (the 1,000 held-out training digits),
seed 0, at 95% and 99% sparsity; the 90% rows take the 95% choice.

The rule that picks each contender's winner, per sparsity
(`deadwood_tf.benchmarks.search.choose`):
  1. A candidate whose measured sparsity misses the target by more than
     `max_sparsity_miss` is out (a row that is not at its sparsity is not a
     row of that sparsity).
  2. The highest validation worst case wins: a digit counts only if it is
     classified correctly clean and under PGD-20 with 5 restarts, APGD-CE and
     targeted APGD-DLR (the fast evaluator; Square is left out of selection
     for its cost and is run on the test split).
  3. Within `tie` of the best worst case, the higher validation clean
     accuracy wins; then the earlier candidate in the list.

Then every contender's winner runs on the test split, seeds 0-4, at 90, 95 and
99%, under protocol `mnist_fair` (benchmarks/results/mnist_fair/); every row
records this file's commit. The dense ceiling (`dense_at_long`: the dense-AT
model with the same 6 more adversarial epochs a pruned row gets, and no cut)
takes the gradual control's 95% learning rate.

  deadwood-benchmark --search=benchmarks/search/mnist_fair_r1.py --stage=validation
  deadwood-benchmark --search=benchmarks/search/mnist_fair_r1.py --stage=choose
  deadwood-benchmark --search=benchmarks/search/mnist_fair_r1.py --stage=test

What came before (so a reader can count how often the test split was read):
the dual-step-0.2 test rows (benchmarks/reruns/mnist_cnn/dual0.2/) tied the
gradual control on PGD-20; only then did rounds 7-8 search Deadwood's settings
alone on validation PGD-20, and dual step 3.0 won. This round starts over,
with the same search for every contender and the worst case as the figure.
"""

import itertools


def _grid(**axes):
    """Every combination of `axes` ("section.field": values), in order."""
    keys = list(axes)
    return [dict(zip(keys, values)) for values in itertools.product(*axes.values())]


def _fields(**kwargs):
    """Keyword names with "__" for "." ("deadwood__learning_rate")."""
    return {k.replace("__", "."): v for k, v in kwargs.items()}


def get_search():
    return {
        "name": "fair_r1",
        "base_config": "configs/benchmark_full.py",
        "protocol": "mnist_fair",
        "seed": 0,
        "sparsities": (0.95, 0.99),
        "take": {0.9: 0.95},
        "test_sparsities": (0.9, 0.95, 0.99),
        "test_seeds": (0, 1, 2, 3, 4),
        "max_sparsity_miss": 0.002,
        "tie": 0.002,
        # The validation worst case: PGD restarts, APGD-CE, APGD-T (top 3 targets).
        "selection": {"examples": 1000, "pgd_restarts": 5, "apgd_steps": 100,
                      "apgd_targets": 3, "square": False},
        "ceiling": {"method": "dense_at_long", "takes": ("gradual_magnitude_at", 0.95)},
        "contenders": {
            # The Lagrangian's own settings: the dual step and the L1 weight rho.
            "deadwood": _grid(**_fields(deadwood__learning_rate=(3e-3, 1e-2),
                                        deadwood__dual_step_size=(0.2, 3.0),
                                        deadwood__sparsity_weight=(10.0, 50.0))),
            # The control has no Lagrangian: its schedule is its own setting (the
            # cubic's power and how many of the 6 epochs the cut spreads over).
            "gradual_magnitude_at": [
                {"deadwood.learning_rate": lr, "prune.power": power,
                 "prune.solve_epochs": solve, "prune.finetune_epochs": 6 - solve}
                for lr, power, solve in itertools.product((3e-3, 1e-2), (1, 3), (3, 4))],
            # One cut before training, then plain AT: the learning rate is all it has.
            "global_magnitude_at": _grid(**_fields(deadwood__learning_rate=(
                5e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 2e-2, 3e-2))),
            "hydra_global": _grid(**_fields(hydra__learning_rate=(3e-3, 1e-2),
                                            hydra__score_learning_rate=(1e-3, 1e-2),
                                            hydra__score_epochs=(2, 3))),
            "pquant_pdp": _grid(**_fields(pquant__pdp__learning_rate=(3e-3, 1e-2),
                                          pquant__pdp__epsilon=(0.3, 0.5),
                                          pquant__pdp__pruning_epochs=(4, 5))),
            "tfmot_at": _grid(**_fields(tfmot__learning_rate=(3e-3, 1e-2),
                                        tfmot__pruning_epochs=(2, 4),
                                        tfmot__frequency=(10, 25))),
        },
    }
