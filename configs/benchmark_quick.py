"""The benchmark on a quarter of mnist10k with PGD-3 in training: ~15 min on 2 CPU cores.

  python tools/benchmark.py --config=configs/benchmark_quick.py --workdir=runs/benchmark_quick
"""

from deadwood_tf.config import benchmark_config


def get_config():
    c = benchmark_config()
    c.data.num_train = 2000
    c.data.num_test = 1000
    c.dense.epochs = 6
    c.dense.adversarial_epochs = 4
    c.attack.steps = 3
    c.attack.step_size = 0.08
    c.eval.square_examples = 100
    c.eval.square_queries = 300
    return c
