"""deadwood-benchmark: benchmark rows (method, sparsity, seed), one JSON file each.

  deadwood-benchmark --config=configs/benchmark_full.py \
      --config.methods=deadwood,gradual_magnitude_at --config.sparsities=0.95
  deadwood-benchmark --config=configs/benchmark_full.py --worst_case=deadwood \
      --config.sparsities=0.95 --config.seeds=0   # worst case of finished rows' models
  deadwood-benchmark --search=benchmarks/search/mnist_fair_r1.py --stage=validation
                                        # then --stage=choose, then --stage=test
  deadwood-benchmark --reproduce=benchmarks/results/mnist_cnn/deadwood_0.95_seed0.json
                                        # one committed row, rebuilt in a scratch dir
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
_SEARCH = flags.DEFINE_string(
    "search", None, "A committed search file (benchmarks/search/*.py): its candidates, its "
    "rule and its winners' test rows, by --stage.")
_STAGE = flags.DEFINE_enum("stage", None, ["validation", "choose", "test"],
                           "With --search: which stage to run.")
_METHODS = flags.DEFINE_list("search_methods", [], "With --search: only these contenders.")
_SEEDS = flags.DEFINE_list("search_seeds", [], "With --search --stage=test: only these seeds.")
_REPRODUCE = flags.DEFINE_string(
    "reproduce", None, "A committed row's .json file: rebuild that row from its own stored "
    "config and seed in a scratch directory (--workdir only if given) and print the committed "
    "and the new figures side by side; exits 1 if a figure is outside the documented tolerance.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _REPRODUCE.value:
        from deadwood_tf.benchmarks import reproduce

        workdir = _WORKDIR.value if flags.FLAGS["workdir"].present else None
        return 0 if reproduce.reproduce(_REPRODUCE.value, workdir=workdir)["ok"] else 1
    if _SEARCH.value:
        return _search()
    if _CONFIG.value is None:
        raise app.UsageError("Missing flag --config (a configs/benchmark_*.py file), or give "
                             "--reproduce=ROW.json.")
    if _WORST.value:
        from deadwood_tf.benchmarks import worst_case

        worst_case.run(_CONFIG.value, _WORST.value, _RESULTS.value, _WORKDIR.value,
                       variant=_VARIANT.value)
    else:
        from deadwood_tf.benchmarks import runner

        runner.run(_CONFIG.value, _RESULTS.value, _WORKDIR.value, _VARIANT.value)


def _search():
    from deadwood_tf.benchmarks import search

    if _STAGE.value is None:
        raise app.UsageError("Missing flag --stage (validation, choose or test) for --search.")
    s = search.load(_SEARCH.value)
    methods = _METHODS.value or None
    if _STAGE.value == "validation":
        search.run_validation(s, _RESULTS.value, _WORKDIR.value, methods)
    elif _STAGE.value == "choose":
        chosen = search.choose(s, _RESULTS.value)
        for key, index in chosen["choice"].items():
            print(f"{key}: candidate {index} "
                  f"{s['contenders'][key.split('@')[0]][index] if index is not None else '-'}")
    else:
        search.run_test(s, _RESULTS.value, _WORKDIR.value, methods,
                        [int(x) for x in _SEEDS.value] or None)
    return 0


def run():
    app.run(main)


if __name__ == "__main__":
    run()
