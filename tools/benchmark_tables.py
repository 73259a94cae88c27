"""The benchmark tables of the docs, from the row files under benchmarks/results/.

Each protocol's tables go between its markers in docs/benchmarks.md or benchmarks/HISTORY.md
(superseded protocols, the validation sweep, a search's validation stage); the headline
table goes into README.md.

  python tools/benchmark_tables.py            # rewrite the tables (and the plots)
  python tools/benchmark_tables.py --check    # exit 1 if the docs disagree with the rows
"""

import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_RESULTS = flags.DEFINE_string("results_dir", "benchmarks/results", "Folder of the row files.")
_DOCS = flags.DEFINE_list("docs", None, "Markdown files holding the generated blocks "
                          "(default: deadwood_tf.benchmarks.tables.DOCS).")
_PROTOCOLS = flags.DEFINE_list("protocols", None, "Protocols (folders of --results_dir); "
                               "default: every folder.")
_CHECK = flags.DEFINE_bool("check", False, "Only check: exit 1 when the docs disagree.")


def main(argv):
    del argv
    from deadwood_tf.benchmarks import tables

    results = _RESULTS.value
    if not os.path.isdir(results):
        raise app.UsageError(f"--results_dir: expected a folder of row files. Received: {results!r}")
    protocols = _PROTOCOLS.value or sorted(
        d for d in os.listdir(results) if os.path.isdir(os.path.join(results, d)))
    docs = _DOCS.value or list(tables.DOCS)
    if _CHECK.value:
        stale = tables.check_docs(docs, results, protocols)
        if stale:
            print(f"{','.join(docs)} disagrees with the rows of {stale}: run "
                  "python tools/benchmark_tables.py", file=sys.stderr)
            sys.exit(1)
        print(f"{','.join(docs)} agrees with {results} ({', '.join(protocols)})")
        return
    tables.update_docs(docs, results, protocols)
    for p in protocols:
        tables.plot(results, p, os.path.join(results, p, "robust_accuracy_vs_sparsity.png"))
        tables.plot_latency(results, p,
                            os.path.join(results, p, "latency", "accuracy_vs_latency.png"))
    print(f"wrote {','.join(docs)} ({', '.join(protocols)})")


if __name__ == "__main__":
    app.run(main)
