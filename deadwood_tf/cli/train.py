"""deadwood-train: the whole Deadwood pipeline from one config.

  deadwood-train --config=configs/digits_cnn.py --workdir=runs/digits \
      --config.prune.target_sparsity=0.95
  TF_CONFIG='{"cluster": ..., "task": {"type": "worker", "index": 0}}' \
      deadwood-train --config=... --workdir=... --strategy=multi_worker   # on each worker
"""

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file (configs/*.py) defining get_config().",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, models, report.")
_STRATEGY = flags.DEFINE_string(
    "strategy", None, "tf.distribute strategy: one_device | mirrored | multi_worker (the "
    "worker's task from TF_CONFIG). Overrides config.strategy.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from deadwood_tf import train

    config = _CONFIG.value
    if _STRATEGY.value is not None:
        train.check_strategy(_STRATEGY.value, "--strategy")
        with config.unlocked():  # configs not built on default_config() lack the field
            config.strategy = _STRATEGY.value
    train.train_and_evaluate(config, _WORKDIR.value)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
