"""deadwood-benchmark: Deadwood against tfmot, global magnitude + AT and HYDRA.

  deadwood-benchmark --config=configs/benchmark_quick.py --workdir=runs/benchmark_quick
  deadwood-benchmark --config=configs/benchmark_full.py --workdir=runs/benchmark_full \
      --config.data.path=PATH/mnist.npz
"""

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A configs/benchmark_*.py file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for models, rows and results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from deadwood_tf import benchmark

    benchmark.run_benchmark(_CONFIG.value, _WORKDIR.value)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
