"""The example-index contract: how each example's index reaches the training step.

Per-example multipliers need the index `i` of every example in a batch.
Arrays given to `fit(x, y)` get it attached (`attach`); a tf.data input may
yield `(x, y, index)`. The step reads it back (`unpack`) and keeps labels and
indices in range (`labels`, `indices`): an out-of-range one is replaced by 0
and flagged, for the model to leave that example out and raise after the step
(`tf.debugging` asserts compile to nothing under XLA).

>>> import numpy as np
>>> x, y, index, sw = unpack((attach(np.zeros((3, 2)), 3), np.int64([0, 1, 2])))
>>> index.tolist(), sw is None
([0, 1, 2], True)
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from deadwood_tf import compat

INPUTS = "__deadwood_inputs__"
INDEX = "__deadwood_index__"


def attach(x, num_examples: int) -> dict:
    """`x` with the indices `0..num_examples-1` attached, for `fit`'s shuffling to carry."""
    return {INPUTS: x, INDEX: np.arange(num_examples, dtype="int64")}


def inputs(x):
    """The model's inputs of `x`, with an attached index taken off."""
    return x[INPUTS] if isinstance(x, dict) and INPUTS in x else x


def unpack(data):
    """`(x, y, index, sample_weight)` of a batch: `(x, y, index[, sample_weight])`
    (an integer third element is the index) or `(attach(x), y[, sample_weight])`.
    `index` is None when the batch carries none."""
    if isinstance(data, (tuple, list)) and len(data) == 4:
        x, y, index, sample_weight = data
    else:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        index = None
        if sample_weight is not None and sample_weight.dtype.is_integer:
            index, sample_weight = sample_weight, None
    if isinstance(x, dict) and INDEX in x:
        index, x = x[INDEX], x[INPUTS]
    return x, y, index, sample_weight


def is_array_like(x) -> bool:
    """Whether `x` (a structure) holds only arrays, tensors or lists: data `fit`
    slices into batches itself, so the indices can be attached."""
    leaves = tf.nest.flatten(x)
    return bool(leaves) and all(isinstance(l, (np.ndarray, tf.Tensor, list)) for l in leaves)


def dataset_has_index(x) -> bool:
    """Whether a `tf.data.Dataset` (or distributed one) yields `(x, y, index, ...)`
    with an integer index."""
    spec = x.element_spec
    if isinstance(x, tf.distribute.DistributedDataset) and isinstance(spec, tuple) \
            and len(spec) >= 3:
        spec = tuple(compat.per_replica_component_spec(s) for s in spec)
    return (isinstance(spec, tuple) and len(spec) >= 3
            and getattr(spec[2], "dtype", tf.float32).is_integer)


def check_labels(y, num_classes: int) -> None:
    """Raises ValueError unless `y` holds integer labels in `[0, num_classes)` or
    one-hot rows of length `num_classes`."""
    y = np.asarray(y)
    if y.ndim >= 2 and y.shape[-1] == num_classes and y.shape[-1] > 1:
        return  # one-hot
    if y.size and (not np.issubdtype(y.dtype, np.integer) and not np.all(np.mod(y, 1) == 0)):
        raise ValueError(
            "Invalid value for argument `y`: expected integer class labels or one-hot "
            f"rows of length {num_classes}. Received: y of dtype {y.dtype} with "
            "non-integer values"
        )
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"Invalid value for argument `y`: expected labels in [0, {num_classes}) "
            f"(the models' output size). Received: labels from {y.min()} to {y.max()}"
        )


def labels(y, num_classes: int):
    """`(labels, valid)`: int64 class ids `[batch]` (one-hot rows argmax-ed),
    out-of-range ones replaced by 0 and flagged False in `valid`."""
    y = tf.convert_to_tensor(y)
    if y.shape.rank is not None and y.shape.rank >= 2 and y.shape[-1] == num_classes \
            and num_classes > 1:
        y = tf.argmax(y, axis=-1)
    y = tf.reshape(tf.cast(y, tf.int64), [-1])
    valid = (y >= 0) & (y < num_classes)
    return tf.where(valid, y, tf.zeros_like(y)), valid


def indices(index, num_examples: int):
    """`(index, valid)` like `labels`, for example indices in `[0, num_examples)`."""
    index = tf.reshape(tf.cast(index, tf.int64), [-1])
    valid = (index >= 0) & (index < num_examples)
    return tf.where(valid, index, tf.zeros_like(index)), valid


def invalid_data_error(num_labels: int, num_indices: int, num_classes: int,
                       num_examples) -> ValueError:
    """The error for `num_labels` out-of-range labels and `num_indices` indices."""
    found = []
    if num_labels:
        found.append(f"{num_labels} labels outside [0, {num_classes}) (the models' "
                     "output size)")
    if num_indices:
        found.append(f"{num_indices} example indices outside [0, num_examples="
                     f"{num_examples})")
    return ValueError(
        "Invalid value for argument `y` or the example indices: expected labels in "
        f"[0, {num_classes}) and indices in [0, {num_examples}). Received: "
        + " and ".join(found) + " in the last batch.")
