"""The benchmark's settings (configs/benchmark_*.py start here).

The layout follows the pipeline's (`deadwood_tf.config.default_config`):
`attack`, `deadwood` and `prune` mean the same there and here, so the one
factory `callbacks.from_config` builds the Deadwood callback of both.
"""

from __future__ import annotations

import ml_collections

from deadwood_tf.config import default_config


def benchmark_config() -> ml_collections.ConfigDict:
    """The reference protocol without its data path (configs give it).

    L-inf eps 0.2 on inputs in [0, 1]; training attack PGD-5 (step 0.05,
    random start); evaluation PGD-20 (step 0.02, random start) and FGSM; the
    CNN Conv(32,3)-MaxPool-Conv(64,3)-MaxPool-Dense(128)-Dense(10) (225k
    parameters). Per seed, one dense model: 8 epochs natural, then 6 epochs of
    PGD-5 adversarial training (Adam 1e-3, batch 128); every pruning method
    then gets `prune.solve_epochs + prune.finetune_epochs` (3 + 3) epochs of
    adversarial training from that dense-AT model.
    """
    base = default_config()
    c = ml_collections.ConfigDict()
    c.protocol = "mnist_cnn"       # results go to <results_dir>/<protocol>/
    c.verbose = 2
    c.methods = ()                  # empty: every method of benchmarks.methods.METHODS
    c.sparsities = (0.9, 0.95, 0.99)
    c.seeds = (0, 1, 2)
    # Where a row is evaluated: "test" (final models, read once) or
    # "validation" (every choice: defaults, peers' settings).
    c.split = "test"
    c.data = base.data
    c.data.name = "npz"
    c.data.path = ""                # configs set it; the library holds no path
    c.data.validation = 1000        # held out of the training data, stratified
    c.data.split_seed = 0           # fixed: the same split for every seed and method
    c.model = base.model
    c.model.width = 32
    c.attack = base.attack
    c.dense = ml_collections.ConfigDict()
    c.dense.epochs = 8
    c.dense.adversarial_epochs = 6
    c.dense.learning_rate = 1e-3
    c.deadwood = base.deadwood      # the pipeline's Deadwood defaults
    c.prune = base.prune
    c.prune.schedule = "gradual"
    c.prune.solve_epochs = 3
    c.prune.finetune_epochs = 3
    c.tfmot = ml_collections.ConfigDict()
    c.tfmot.pruning_epochs = 4      # PolynomialDecay over the first 4 epochs
    c.tfmot.frequency = 10          # steps between tfmot's mask updates
    c.hydra = ml_collections.ConfigDict()
    c.hydra.score_epochs = 3
    c.hydra.score_learning_rate = 1e-3
    c.eval = ml_collections.ConfigDict()
    c.eval.eps = 0.2
    c.eval.fgsm = True
    c.eval.pgd_steps = 20
    c.eval.pgd_step_size = 0.02
    # Worst case over attacks (tools/benchmark.py --worst_case), headline models.
    c.worst = ml_collections.ConfigDict()
    c.worst.examples = 1000
    c.worst.pgd_restarts = 5
    c.worst.apgd_steps = 100
    c.worst.square_queries = 5000
    return c
