"""A seconds-long benchmark on scikit-learn's digits, for the tests."""

from deadwood_tf.config import benchmark_config


def get_config():
    c = benchmark_config()
    c.verbose = 0
    c.sparsities = (0.5, 0.9)
    c.data.name = "digits"
    c.data.path = ""
    c.data.num_train = 400
    c.data.num_test = 100
    c.data.batch_size = 64
    c.model.width = 8
    c.dense.epochs = 6
    c.dense.learning_rate = 3e-3
    c.dense.adversarial_epochs = 1
    c.attack.eps = 0.1
    c.attack.steps = 2
    c.attack.step_size = 0.05
    c.eval.eps = 0.1
    c.eval.pgd_steps = 5
    c.eval.pgd_step_size = 0.03
    c.eval.square_examples = 10
    c.eval.square_queries = 20
    c.prune.epochs = 2
    c.tfmot.pruning_epochs = 1
    c.hydra.score_epochs = 1
    c.deadwood.solve_epochs = 1
    return c
