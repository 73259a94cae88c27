"""The benchmark's reference protocol on all of mnist10k (GPU recommended; ~1 h on 2 CPU cores).

  python tools/benchmark.py --config=configs/benchmark_full.py --workdir=runs/benchmark_full
"""

from deadwood_tf.config import benchmark_config


def get_config():
    return benchmark_config()
