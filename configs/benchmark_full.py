"""The benchmark's reference protocol on mnist10k (7,000 train / 1,000 validation / 2,000 test).

Rows one at a time, resumable (see docs/benchmarks.md for the commands):

  PYTHONPATH=$PWD python tools/benchmark.py --config=configs/benchmark_full.py \\
      --config.methods=deadwood,gradual_magnitude_at --config.sparsities=0.95
"""

from deadwood_tf.benchmarks.config import benchmark_config


def get_config():
    c = benchmark_config()
    c.data.path = "../shared/data/mnist10k.npz"
    return c
