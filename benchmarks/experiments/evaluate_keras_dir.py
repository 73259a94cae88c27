"""Clean and PGD accuracy of every .keras file in some folders, on one test subset.

  python benchmarks/experiments/evaluate_keras_dir.py --dirs=runs/a,runs/b \
      --data_path=../shared/data/mnist10k.npz --num_test=1000 --eps=0.2

Runs of benchmarks/experiments/benchmark_channels.py evaluate on their own test subsets; this
puts models of several runs on the same examples and the same attack.
"""

import glob
import json
import os

import keras
from absl import app, flags

import deadwood_tf as dw
from deadwood_tf import channel_groups as cg
from deadwood_tf import data as data_lib

_DIRS = flags.DEFINE_list("dirs", [], "Folders of .keras files.")
_DATA = flags.DEFINE_string("data_path", "../shared/data/mnist10k.npz", "An .npz.")
_NUM_TEST = flags.DEFINE_integer("num_test", 1000, "Random test examples.")
_EPS = flags.DEFINE_float("eps", 0.2, "L-inf radius.")
_STEPS = flags.DEFINE_integer("steps", 20, "PGD steps.")
_OUT = flags.DEFINE_string("out", "", "JSON output.")


def main(argv):
    del argv
    ds = data_lib.load_dataset("npz", path=_DATA.value, num_train=1, num_test=_NUM_TEST.value,
                               seed=123)
    attack = dw.PGD(_EPS.value, steps=_STEPS.value)
    rows = []
    for d in _DIRS.value:
        for path in sorted(glob.glob(os.path.join(d, "*.keras"))):
            model = keras.models.load_model(path)
            r = dw.evaluate_robustness(model, ds.x_test, ds.y_test, [attack])
            row = {"file": path, "clean": r["clean"], "pgd": r[attack.name],
                   "macs": cg.channel_groups(model).total_macs, "params": model.count_params()}
            rows.append(row)
            print(row, flush=True)
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    app.run(main)
