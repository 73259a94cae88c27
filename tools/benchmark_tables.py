"""The benchmark tables of the docs, from the row files under benchmarks/results/.

Each protocol's tables go between its markers in docs/benchmarks.md or benchmarks/HISTORY.md
(superseded protocols, the validation sweep); the headline table goes into README.md.

  python tools/benchmark_tables.py            # rewrite the tables (and the plots)
  python tools/benchmark_tables.py --check    # exit 1 if the docs disagree with the rows
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from deadwood_tf.benchmarks import tables  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results_dir", default="benchmarks/results")
    parser.add_argument("--docs", default=",".join(tables.DOCS),
                        help="comma-separated Markdown files holding the generated blocks")
    parser.add_argument("--protocols", default="",
                        help="comma-separated; default: every folder of results_dir")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    protocols = [p for p in args.protocols.split(",") if p] or sorted(
        d for d in os.listdir(args.results_dir)
        if os.path.isdir(os.path.join(args.results_dir, d)))
    docs = [d for d in args.docs.split(",") if d]
    if args.check:
        stale = tables.check_docs(docs, args.results_dir, protocols)
        if stale:
            print(f"{args.docs} disagrees with the rows of {stale}: run "
                  "python tools/benchmark_tables.py", file=sys.stderr)
            sys.exit(1)
        print(f"{args.docs} agrees with {args.results_dir} ({', '.join(protocols)})")
        return
    tables.update_docs(docs, args.results_dir, protocols)
    for p in protocols:
        tables.plot(args.results_dir, p,
                    os.path.join(args.results_dir, p, "robust_accuracy_vs_sparsity.png"))
        tables.plot_latency(args.results_dir, p,
                            os.path.join(args.results_dir, p, "latency", "accuracy_vs_latency.png"))
    print(f"wrote {args.docs} ({', '.join(protocols)})")


if __name__ == "__main__":
    main()
