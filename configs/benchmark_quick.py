"""A quarter of mnist10k, PGD-3 in training, one seed: a smoke run of the protocol (minutes).

  PYTHONPATH=$PWD python tools/benchmark.py --config=configs/benchmark_quick.py \\
      --results_dir=runs/quick_results --workdir=runs/quick
"""

from deadwood_tf.benchmarks.config import benchmark_config


def get_config():
    c = benchmark_config()
    c.protocol = "mnist_cnn_quick"
    c.seeds = (0,)
    c.data.path = "../shared/data/mnist10k.npz"
    c.data.num_train = 2500
    c.data.num_test = 1000
    c.data.validation = 500
    c.dense.epochs = 6
    c.dense.adversarial_epochs = 4
    c.attack.steps = 3
    c.attack.step_size = 0.08
    return c
