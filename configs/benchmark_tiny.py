"""A seconds-long benchmark on scikit-learn's digits, for the tests."""

from deadwood_tf.benchmarks.config import benchmark_config


def get_config():
    c = benchmark_config()
    c.protocol = "digits_tiny"
    c.verbose = 0
    c.sparsities = (0.8,)
    c.seeds = (0, 1)
    c.data.name = "digits"
    c.data.num_train = 0            # all 1,437 training digits
    c.data.num_test = 100
    c.data.validation = 200
    c.data.batch_size = 64
    c.model.width = 16
    c.dense.epochs = 6
    c.dense.learning_rate = 3e-3
    c.dense.adversarial_epochs = 1
    c.attack.eps = 0.1
    c.attack.steps = 2
    c.attack.step_size = 0.05
    c.eval.eps = 0.1
    c.eval.pgd_steps = 5
    c.eval.pgd_step_size = 0.03
    c.prune.solve_epochs = 1
    c.prune.finetune_epochs = 1
    c.tfmot.pruning_epochs = 1
    c.hydra.score_epochs = 1
    c.hydra_published.score_epochs = 1
    c.pquant.mdmm.pruning_epochs = 1
    c.pquant.pdp.pruning_epochs = 1
    c.pquant.pdp.epsilon = 1.0      # the whole target in the one pruning epoch
    c.worst.examples = 20
    c.worst.pgd_restarts = 2
    c.worst.apgd_steps = 5
    c.worst.square_queries = 20
    return c
