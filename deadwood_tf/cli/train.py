"""deadwood-train: the whole Deadwood pipeline from one config.

  deadwood-train --config=configs/digits_cnn.py --workdir=runs/digits \
      --config.prune.target_sparsity=0.95
"""

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file (configs/*.py) defining get_config().",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, models, report.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from deadwood_tf import train

    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
