"""deadwood-benchmark: benchmark rows (method, sparsity, seed), one JSON file each.

  deadwood-benchmark --config=configs/benchmark_full.py \
      --config.methods=deadwood,gradual_magnitude_at --config.sparsities=0.95
  deadwood-benchmark --config=configs/benchmark_full.py --worst_case=deadwood \
      --config.sparsities=0.95 --config.seeds=0   # worst case of finished rows' models
  python tools/benchmark_tables.py [--check]   # the docs' tables from the rows

Finished rows are skipped, so a stopped run resumes where it stopped.
"""

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A configs/benchmark_*.py file.", lock_config=True)
_RESULTS = flags.DEFINE_string("results_dir", "benchmarks/results",
                               "Row files go to <results_dir>/<protocol>/.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/benchmark",
                               "Cached dense models and every final model (not committed).")
_VARIANT = flags.DEFINE_string("variant", "", "Name of a change of settings (validation sweep).")
_WORST = flags.DEFINE_list("worst_case", [], "Methods whose models (config.seeds x "
                           "config.sparsities, config.split) get the worst-case attack cascade "
                           "(instead of training rows).")
flags.mark_flags_as_required(["config"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _WORST.value:
        from deadwood_tf.benchmarks import worst_case

        worst_case.run(_CONFIG.value, _WORST.value, _RESULTS.value, _WORKDIR.value,
                       variant=_VARIANT.value)
    else:
        from deadwood_tf.benchmarks import runner

        runner.run(_CONFIG.value, _RESULTS.value, _WORKDIR.value, _VARIANT.value)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
