"""Datasets as tf.data pipelines that carry each example's index.

Every loader returns a `Dataset` bundle: arrays for the train and test splits
(images scaled to [0, 1], integer labels) and `train_pipeline(...)`, a
shuffled, batched `tf.data.Dataset` of `(x, y, index)` that
`DeadwoodModel.fit` uses to keep one multiplier per example.

Sources: scikit-learn's digits (offline), Keras' datasets (mnist,
fashion_mnist, cifar10: downloaded by Keras on a machine with a network), and
`.npz` files in Keras' layout (`x_train`, `y_train`, `x_test`, `y_test`).

Example:

>>> ds = load_dataset("mnist", path="../shared/data/mnist10k.npz")
>>> for x, y, index in ds.train_pipeline(batch_size=128).take(1): ...
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from deadwood_tf import checks

KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10")
DATASETS = ("digits", "npz") + KERAS_DATASETS


@dataclasses.dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    @property
    def num_train(self) -> int:
        return len(self.x_train)

    def train_pipeline(self, batch_size: int, seed: int = 0, with_index: bool = True,
                       shuffle: bool = True) -> tf.data.Dataset:
        """Batches of `(x, y, index)` (or `(x, y)`), reshuffled every epoch."""
        if with_index:
            ds = tf.data.Dataset.from_tensor_slices(
                (self.x_train, self.y_train, np.arange(self.num_train, dtype="int64")))
        else:
            ds = tf.data.Dataset.from_tensor_slices((self.x_train, self.y_train))
        if shuffle:
            ds = ds.shuffle(self.num_train, seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def test_pipeline(self, batch_size: int) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices((self.x_test, self.y_test)).batch(batch_size)


def _prepare(x, y):
    x = np.asarray(x)
    scale = 255.0 if x.dtype == np.uint8 or x.max() > 1.0 else 1.0
    x = (x.astype("float32") / scale)
    if x.ndim == 3:  # (n, h, w) grey images
        x = x[..., None]
    return x, np.asarray(y).reshape(-1).astype("int64")


def _subset(x, y, n, seed):
    if not n or n >= len(x):
        return x, y
    order = np.random.default_rng(seed).permutation(len(x))[:n]
    return x[order], y[order]


def load_npz(path: str):
    """Reads an `.npz` in Keras' layout; a clear error if it is missing or malformed."""
    if not path or not os.path.exists(path):
        raise FileNotFoundError(
            f"Invalid value for `data.path`: no file at {path!r}. Pass an .npz in Keras' "
            "layout (x_train, y_train, x_test, y_test), e.g. "
            "--config.data.path=../shared/data/mnist10k.npz or Keras' own mnist.npz."
        )
    with np.load(path) as f:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f]
        if missing:
            raise ValueError(
                f"Invalid file for `data.path`: {path} lacks arrays {missing}; expected "
                f"Keras' layout (x_train, y_train, x_test, y_test). Received arrays: {sorted(f.files)}"
            )
        return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])


def _load_keras(name):
    import keras

    try:
        return getattr(keras.datasets, name).load_data()
    except Exception as e:  # no network, blocked host, corrupt cache
        raise RuntimeError(
            f"Could not download the {name} dataset through keras.datasets ({type(e).__name__}: "
            f"{e}). On a machine without a network, pass an .npz in Keras' layout with "
            f"--config.data.path=PATH (for MNIST, e.g. ../shared/data/mnist10k.npz)."
        ) from e


def load_dataset(name: str, path: str = "", num_train: int = 0, num_test: int = 0,
                 seed: int = 0, value_range: tuple[float, float] | None = None,
                 range_of: str = "") -> Dataset:
    """Loads a dataset by name, scaled to [0, 1], and checks it.

    Args:
      name: "digits" (scikit-learn, 8x8, offline), "mnist", "fashion_mnist",
        "cifar10" (from `path` when given, else `keras.datasets`), or "npz"
        (`path` required).
      path: an `.npz` in Keras' layout.
      num_train, num_test: keep a random subset of this size (0: all).
      seed: of the digits split and of the subsets.
      value_range: `(lo, hi)` the scaled inputs must lie in (the attack's
        `[clip_min, clip_max]`), or None; `range_of` names its source.

    Raises:
      ValueError: from `checks.check_arrays`, naming the array (`x_train`,
        `y_test`, ...), the file, the first offending example and what was
        expected: non-finite inputs, split arrays of different lengths, labels
        that are not integers >= 0, inputs outside `value_range`.
    """
    if name not in DATASETS:
        raise ValueError(
            f"Invalid value for `data.name`: expected one of {DATASETS}. Received: {name!r}"
        )
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        source = "scikit-learn's digits"
        x, y = _prepare(d.images / 16.0, d.target)
        order = np.random.default_rng(seed).permutation(len(x))
        x, y = x[order], y[order]
        cut = int(round(0.8 * len(x)))
        (x_train, y_train), (x_test, y_test) = (x[:cut], y[:cut]), (x[cut:], y[cut:])
    else:
        if name == "npz" or path:
            source = path
            (x_train, y_train), (x_test, y_test) = load_npz(path)
        else:
            source = f"keras.datasets.{name}"
            (x_train, y_train), (x_test, y_test) = _load_keras(name)
        # Before scaling: a NaN would make the scale (from x.max()) NaN too.
        for split, (x, y) in (("train", (x_train, y_train)), ("test", (x_test, y_test))):
            checks.check_arrays(x, y, x_name=f"x_{split}", y_name=f"y_{split}", source=source)
        x_train, y_train = _prepare(x_train, y_train)
        x_test, y_test = _prepare(x_test, y_test)
    x_train, y_train = _subset(x_train, y_train, num_train, seed)
    x_test, y_test = _subset(x_test, y_test, num_test, seed + 1)
    if value_range is not None:
        for split, x in (("x_train", x_train), ("x_test", x_test)):
            checks.check_range(x, split, value_range, range_of, source)
    num_classes = int(max(y_train.max(), y_test.max()) + 1)
    return Dataset(name, x_train, y_train, x_test, y_test, num_classes)
