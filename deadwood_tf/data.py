"""Datasets as tf.data pipelines that carry each example's index.

Every loader returns a `Dataset` bundle: arrays for the train and test splits
(images scaled to [0, 1], integer labels) and `train_pipeline(...)`, a
shuffled, batched `tf.data.Dataset` of `(x, y, index)` that
`DeadwoodModel.fit` uses to keep one multiplier per example.

Sources: scikit-learn's digits (offline), Keras' datasets (mnist,
fashion_mnist, cifar10: downloaded by Keras on a machine with a network),
`.npz` files in Keras' layout (`x_train`, `y_train`, `x_test`, `y_test`), and
`.npz` files of JPEG bytes with offsets (`x_train_jpeg`, `x_train_offsets`,
...; all of CIFAR-10 in `../shared/data/cifar10_jpeg.npz`): any `data.path` in
that layout is decoded once, checked against the sha256 of its known pixels,
and cached (`load_jpeg_npz`).

Training augmentation (`augment=True`: zero-pad 4, random crop back to the
image size, random horizontal flip; seeded) is applied in `train_pipeline`
only, so every trainer that reads the pipeline sees it and evaluation never does.

Example:

    ds = load_dataset("mnist", path="../shared/data/mnist10k.npz")
    for x, y, index in ds.train_pipeline(batch_size=128).take(1): ...
"""

from __future__ import annotations

import dataclasses
import os
import zipfile

import numpy as np
import tensorflow as tf
from absl import logging

from deadwood_tf import checks, workdir

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
    # Pad-4 / random-crop / horizontal-flip in `train_pipeline` (images only).
    augment: bool = False

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    @property
    def num_train(self) -> int:
        return len(self.x_train)

    def train_pipeline(self, batch_size: int, seed: int = 0, with_index: bool = True,
                       shuffle: bool = True) -> tf.data.Dataset:
        """Batches of `(x, y, index)` (or `(x, y)`), reshuffled every epoch.

        With `augment`, each image is augmented (`augment_images`) with a draw
        that differs every epoch and is fixed by `seed`.
        """
        if with_index:
            ds = tf.data.Dataset.from_tensor_slices(
                (self.x_train, self.y_train, np.arange(self.num_train, dtype="int64")))
        else:
            ds = tf.data.Dataset.from_tensor_slices((self.x_train, self.y_train))
        if shuffle:
            ds = ds.shuffle(self.num_train, seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)
        if self.augment:
            # One stateless seed per batch from a seeded stream that changes every epoch.
            seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
            ds = tf.data.Dataset.zip(ds, seeds.batch(2)).map(
                lambda batch, s: (augment_images(batch[0], s), *batch[1:]),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.prefetch(tf.data.AUTOTUNE)

    def test_pipeline(self, batch_size: int) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices((self.x_test, self.y_test)).batch(batch_size)


AUGMENT_PADDING = 4


def augment_images(x, seed, padding: int = AUGMENT_PADDING):
    """The standard CIFAR augmentation of a batch `x` (n, h, w, c): zero-pad
    `padding` pixels on each side, crop a random h x w window, flip left-right
    with probability 1/2. Each image gets its own draw; the same `seed` (a
    shape-(2,) int tensor, as `tf.random.stateless_*` take) gives the same
    output. Pixel values are unchanged (zeros enter at the borders), so the
    result stays in the input range.
    """
    # Stateless draws rather than Keras' RandomCrop/RandomFlip layers: the draw is a
    # function of `seed` alone, so a rerun (or a resumed fit) sees the same images.
    shape = tf.shape(x)
    n, h, w = shape[0], shape[1], shape[2]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    dy = tf.random.stateless_uniform([n], seeds[0], 0, 2 * padding + 1, dtype=tf.int32)
    dx = tf.random.stateless_uniform([n], seeds[1], 0, 2 * padding + 1, dtype=tf.int32)
    flip = tf.random.stateless_uniform([n], seeds[2]) < 0.5
    padded = tf.pad(x, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
    # Gather each image's window: rows dy..dy+h, columns dx..dx+w (reversed when flipped).
    rows = dy[:, None] + tf.range(h)[None, :]
    cols = tf.range(w)[None, :]
    cols = dx[:, None] + tf.where(flip[:, None], w - 1 - cols, cols)
    out = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(out, cols, axis=2, batch_dims=1)


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
    """Reads an `.npz` in Keras' layout, or of JPEG bytes (`load_jpeg_npz`); a
    clear error if it is missing or malformed."""
    if not path or not os.path.exists(path):
        raise FileNotFoundError(
            f"Invalid value for `data.path`: no file at {path!r}. Pass an .npz in Keras' "
            "layout (x_train, y_train, x_test, y_test), e.g. "
            "--config.data.path=../shared/data/mnist10k.npz or Keras' own mnist.npz, or one "
            "of JPEG bytes such as ../shared/data/cifar10_jpeg.npz (paths are relative to "
            f"the working directory, {os.getcwd()})."
        )
    if _is_jpeg_npz(path):
        return load_jpeg_npz(path)
    with np.load(path) as f:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f]
        if missing:
            raise ValueError(
                f"Invalid file for `data.path`: {path} lacks arrays {missing}; expected "
                f"Keras' layout (x_train, y_train, x_test, y_test). Received arrays: {sorted(f.files)}"
            )
        return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])


# ---------------------------------------------------------------- JPEG files

# The `.npz` files of JPEG bytes this library knows, by the file's sha256: its
# size and the sha256 of the decoded arrays' raw bytes (uint8, C order), as
# ../shared/data/README.md gives them (decoded there with Pillow; TensorFlow's
# decoder with dct_method="INTEGER_ACCURATE" gives the same pixels).
JPEG_FILES = {
    "508b4ab0b63a02f8209dfb633bde49f2b639b733f49ab3d612ae96712921a902": {
        "name": "cifar10_jpeg.npz (all of CIFAR-10: 50,000 train, 10,000 test)",
        "bytes": 55792473,
        "x_train": "1f14abc92647ae20d547c59da4a5742e591746d7f370ac4cc6bae6ebc27294ed",
        "x_test": "2003fa2d3374143ee8692f0d88ca3887dad574014c362e85bcb949cb6caee3bf",
    },
}
CACHE_ENV = "DEADWOOD_TF_CACHE"
_JPEG_ARRAYS = ("x_train_jpeg", "x_train_offsets", "y_train",
                "x_test_jpeg", "x_test_offsets", "y_test")


def cache_dir(path: str | None = None) -> str:
    """Where decoded arrays are kept: `path`, else $DEADWOOD_TF_CACHE, else
    ~/.cache/deadwood_tf."""
    return os.path.expanduser(path or os.environ.get(CACHE_ENV) or "~/.cache/deadwood_tf")


def _is_jpeg_npz(path: str) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return "x_train_jpeg.npy" in z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def _digest(array: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def decode_jpegs(data: np.ndarray, offsets: np.ndarray, what: str = "images") -> np.ndarray:
    """Decodes image `i` = `data[offsets[i]:offsets[i + 1]]` of concatenated
    JPEG files into a uint8 array (n, h, w, 3).

    TensorFlow's decoder with `dct_method="INTEGER_ACCURATE"` (Pillow's
    pixels), on all cores. Raises ValueError naming `what` and the first image
    that does not decode or whose size differs from the first image's.
    """
    data, offsets = np.asarray(data), np.asarray(offsets)
    if (offsets.ndim != 1 or len(offsets) < 2 or offsets[0] != 0 or
            offsets[-1] != len(data) or np.any(np.diff(offsets) <= 0)):
        raise ValueError(
            f"Invalid offsets of {what}: expected increasing offsets from 0 to the length "
            f"of the bytes ({len(data):,}). Received: {len(offsets):,} offsets from "
            f"{offsets[:1].tolist()} to {offsets[-1:].tolist()}")
    files = [data[a:b].tobytes() for a, b in zip(offsets[:-1], offsets[1:])]

    def decode(b):
        return tf.io.decode_jpeg(b, channels=3, dct_method="INTEGER_ACCURATE")

    try:
        first = decode(files[0]).numpy()
        ds = tf.data.Dataset.from_tensor_slices(files).map(
            lambda b: tf.ensure_shape(decode(b), first.shape),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(1000)
        return np.concatenate([b.numpy() for b in ds])
    except (tf.errors.InvalidArgumentError, ValueError):
        for i, b in enumerate(files):  # only on failure: find the image to name
            try:
                image = decode(b).numpy()
            except tf.errors.InvalidArgumentError as error:
                raise ValueError(f"Invalid {what}: image {i} (bytes {offsets[i]:,} to "
                                 f"{offsets[i + 1]:,}) is not a readable JPEG file. "
                                 f"Received: {str(error).splitlines()[0]}") from None
            if image.shape != first.shape:
                raise ValueError(f"Invalid {what}: expected every image of shape "
                                 f"{first.shape} (that of image 0). Received: {image.shape} "
                                 f"at image {i}") from None
        raise


def load_jpeg_npz(path: str, cache: str | None = None, known: dict | None = None):
    """`((x_train, y_train), (x_test, y_test))` (uint8 images, labels) of an
    `.npz` of JPEG bytes, decoded once and then read from a cache.

    The file holds `x_{split}_jpeg` (uint8, the JPEG files concatenated),
    `x_{split}_offsets` (int64, n + 1) and `y_{split}` for split train and
    test (../shared/data/README.md). Its sha256 must be one of `known`
    (default `JPEG_FILES`), which also gives the sha256 the decoded arrays
    must have. The decoded arrays are cached in `cache_dir(cache)` under the
    file's sha256, so a changed file never reuses another's pixels; the
    cache is written atomically and its arrays are checked against the known
    sha256 when read (a damaged cache is decoded again).

    Raises:
      FileNotFoundError: no file at `path`.
      ValueError: naming `path`, what was expected and what was found: an
        unknown sha256 (a truncated, changed or other file), a file that is
        not an `.npz` or lacks arrays, an image that does not decode, decoded
        pixels with another sha256.
    """
    known = JPEG_FILES if known is None else known
    file_sha = _known_sha256(path, known)
    expect = known[file_sha]
    stem = os.path.splitext(os.path.basename(path))[0]
    name = f"{stem}-{file_sha[:16]}.npz"
    folder = cache_dir(cache)
    arrays = _read_cache(os.path.join(folder, name), expect, path)
    if arrays is None:
        arrays = _decode_checked(_read_jpeg_arrays(path), expect, path)
        _write_cache(folder, name, arrays, path)
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def _known_sha256(path, known) -> str:
    """The sha256 of the file at `path`, one of `known`'s; else a clear error."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"Invalid value for `data.path`: no file at {path!r}. "
                                "Expected an .npz of JPEG bytes, e.g. "
                                "../shared/data/cifar10_jpeg.npz.")
    file_sha, size = workdir.sha256(path), os.path.getsize(path)
    if file_sha not in known:
        expected = "; ".join(f"sha256 {h} ({k['bytes']:,} bytes, {k.get('name', '')})"
                             for h, k in known.items())
        short = [k["name"] for k in known.values() if size < k["bytes"] and k.get("name")]
        hint = f" It is smaller than {short[0]}: truncated?" if short else ""
        raise ValueError(
            f"Invalid file for `data.path`: {path} is not a known JPEG file, so its pixels "
            f"cannot be checked. Expected: {expected}. Received: sha256 {file_sha} "
            f"({size:,} bytes).{hint} Copy the file again, or pass its entry in `known`.")
    return file_sha


def _read_cache(cached, expect, path):
    """The decoded arrays cached at `cached`, or None when missing or not trusted."""
    if not os.path.exists(cached):
        return None
    try:
        with np.load(cached) as f:
            arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        bad = [k for k in ("x_train", "x_test") if _digest(arrays[k]) != expect[k]]
    except Exception as e:  # noqa: BLE001 - any unreadable cache is redone
        bad = [f"unreadable ({type(e).__name__}: {e})"]
    if not bad:
        return arrays
    logging.warning("deadwood_tf: the cache %s cannot be trusted (%s differ from the known "
                    "sha256); decoding %s again", cached, bad, path)
    return None


def _read_jpeg_arrays(path) -> dict:
    """The raw arrays (`_JPEG_ARRAYS`) of the .npz at `path`."""
    try:
        if not zipfile.is_zipfile(path):
            raise zipfile.BadZipFile("not a zip archive")
        with np.load(path) as f:
            missing = [k for k in _JPEG_ARRAYS if k not in f.files]
            if missing:
                raise ValueError(f"Invalid file for `data.path`: {path} lacks arrays {missing}; "
                                 f"expected {_JPEG_ARRAYS}. Received arrays: {sorted(f.files)}")
            return {k: f[k] for k in _JPEG_ARRAYS}
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"Invalid file for `data.path`: {path} does not read as an .npz "
                         f"({type(e).__name__}: {e})") from e


def _decode_checked(raw, expect, path) -> dict:
    """`raw`'s images decoded, each split's pixels checked against `expect`."""
    arrays = {}
    for split in ("train", "test"):
        x = decode_jpegs(raw[f"x_{split}_jpeg"], raw[f"x_{split}_offsets"],
                         f"`x_{split}_jpeg` of {path}")
        found = _digest(x)
        if found != expect[f"x_{split}"]:
            raise ValueError(
                f"Invalid pixels of `x_{split}` decoded from {path}: expected sha256 "
                f"{expect[f'x_{split}']} (Pillow's decode). Received: sha256 {found} with "
                f"TensorFlow {tf.__version__}'s decoder; a JPEG library that rounds "
                "differently changes pixels by a level here and there.")
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, raw[f"y_{split}"]
    return arrays


def _write_cache(folder, name, arrays, path) -> None:
    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
            np.savez(f, **arrays)

    try:
        workdir.Workdir(folder, log=logging.info).save(name, write)
    except OSError as e:  # a read-only home must not stop training
        logging.warning("deadwood_tf: could not cache the decoded %s in %s (%s); set $%s or "
                        "pass `cache` to cache them elsewhere", path, folder, e, CACHE_ENV)


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
                 range_of: str = "", augment: bool = False) -> Dataset:
    """Loads a dataset by name, scaled to [0, 1], and checks it.

    Args:
      name: "digits" (scikit-learn, 8x8, offline), "mnist", "fashion_mnist",
        "cifar10" (from `path` when given, else `keras.datasets`), or "npz"
        (`path` required).
      path: an `.npz` in Keras' layout, or of JPEG bytes (`load_jpeg_npz`).
      num_train, num_test: keep a random subset of this size (0: all).
      seed: of the digits split and of the subsets.
      value_range: `(lo, hi)` the scaled inputs must lie in (the attack's
        `[clip_min, clip_max]`), or None; `range_of` names its source.
      augment: augment the training pipeline (`augment_images`); images only.

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
    for field, n, x in (("num_train", num_train, x_train), ("num_test", num_test, x_test)):
        if n and n > len(x):
            logging.warning("deadwood_tf: `data.%s`=%d exceeds the %d examples of %s: using "
                            "all of them", field, n, len(x), source)
    x_train, y_train = _subset(x_train, y_train, num_train, seed)
    x_test, y_test = _subset(x_test, y_test, num_test, seed + 1)
    if value_range is not None:
        for split, x in (("x_train", x_train), ("x_test", x_test)):
            checks.check_range(x, split, value_range, range_of, source)
    num_classes = int(max(y_train.max(), y_test.max()) + 1)
    if augment and x_train.ndim != 4:
        raise ValueError("Invalid value for `data.augment`: padding, cropping and flipping need "
                         f"images (n, h, w, c). Received: inputs of shape {x_train.shape[1:]} "
                         f"from {source}")
    return Dataset(name, x_train, y_train, x_test, y_test, num_classes, augment=bool(augment))
