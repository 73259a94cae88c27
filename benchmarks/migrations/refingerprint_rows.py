"""Recomputes each benchmark row's `fingerprint` from the config stored in it.

Run once after the fingerprint's definition changes (it became per method):
the row's numbers are untouched; only the hash of the settings it was made
under is recomputed from those same settings, which every row keeps.

  python benchmarks/migrations/refingerprint_rows.py benchmarks/results/mnist_cnn
"""

import glob
import json
import os
import sys

import ml_collections

from deadwood_tf.benchmarks import runner


def main(folders):
    for folder in folders:
        for path in sorted(glob.glob(os.path.join(folder, "**", "*.json"), recursive=True)):
            row = json.load(open(path))
            if "config" not in row or "method" not in row:
                continue
            config = ml_collections.ConfigDict(row["config"])
            new = runner.fingerprint(config, row["method"])
            if row.get("fingerprint") != new:
                row["fingerprint"] = new
                runner.write_json(path, row)
                print(f"{path}: {new}")


if __name__ == "__main__":
    main(sys.argv[1:])
