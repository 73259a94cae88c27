"""General argument checks, and data checks run where data enters.

The bottom module every other may import (it imports none of them):
`check_keras_model` and `unwrap_deadwood` for the model arguments of the
public verbs, and the data checks that the pipeline's loaders,
`DeadwoodModel.fit` and `evaluate_robustness` run.

Bad data otherwise fails late or not at all: a NaN pixel trains to the end and
breaks only the TFLite check; images in [0, 16] given to a [0, 1] attack are
clipped into the attack's range at every step and the model trains on
destroyed inputs without a word. Each check raises a `ValueError` naming the
array (`x_train`, `y_test`, ...), the file when there is one, the first
offending example and what was expected:

>>> import numpy as np
>>> x = np.zeros((4, 2), "float32"); x[2, 1] = np.nan
>>> check_arrays(x, np.arange(4), x_name="x_train", y_name="y_train")
Traceback (most recent call last):
...
ValueError: Invalid data in `x_train`: expected finite values. Received: nan at example 2 (element (2, 1)); 1 non-finite value in all.

Only floating-point inputs are checked for finiteness and range (integer
inputs such as token ids are left alone); inputs may be a nested structure
(dict, list, tuple) of arrays, as a multi-input model takes. A `tf.data`
dataset is checked through its `element_spec` only (label dtype): iterating it
could be as long as an epoch, so its values are not read.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import keras
import numpy as np

# Rows scanned at a time: bounds the temporary boolean arrays on large data.
_CHUNK = 4096


def check_keras_model(model, name: str = "model") -> keras.Model:
    """Raises a ValueError unless `model` is a Keras 3 model; returns it."""
    if isinstance(model, keras.Model):
        return model
    module = type(model).__module__ or ""
    if module.startswith(("tf_keras", "tensorflow.python.keras", "keras.api._v2")) or (
        "keras" in module and hasattr(model, "layers")
    ):
        hint = (
            " It is a Keras 2 (tf_keras) model; rebuild it with `import keras` "
            "(Keras 3) and load its weights."
        )
    else:
        hint = ""
    raise ValueError(
        f"Invalid value for argument `{name}`: expected a Keras 3 `keras.Model`. "
        f"Received: {name} of type {type(model).__module__}.{type(model).__name__}.{hint}"
    )


def unwrap_deadwood(model) -> keras.Model:
    """The student of a `DeadwoodModel` (anything with a Keras `student` and a
    `teacher`), else `model` itself, checked to be a Keras 3 model."""
    student = getattr(model, "student", None)
    if isinstance(student, keras.Model) and hasattr(model, "teacher"):
        return student
    return check_keras_model(model)


def _where(source: str | None) -> str:
    return f" (file {source})" if source else ""


def _leaves(x: Any, name: str) -> Iterator[tuple[str, Any]]:
    """(name, array) for each array of a nested structure, named like `x['image']`."""
    if isinstance(x, dict):
        for k in sorted(x, key=str):
            yield from _leaves(x[k], f"{name}[{k!r}]")
    elif isinstance(x, (list, tuple)):  # several inputs, as Keras reads a list
        for i, v in enumerate(x):
            yield from _leaves(v, f"{name}[{i}]")
    else:
        yield name, x


def _is_array(a) -> bool:
    return hasattr(a, "__array__") or np.isscalar(a)


def _first_bad(a: np.ndarray, bad) -> tuple[int, tuple, int] | None:
    """(example, element index, count) of the entries where `bad(chunk)` holds."""
    first, count = None, 0
    for start in range(0, len(a), _CHUNK):
        mask = bad(a[start:start + _CHUNK])
        n = int(np.count_nonzero(mask))
        if n and first is None:
            idx = np.unravel_index(int(np.argmax(mask.reshape(-1))), mask.shape)
            first = (start + int(idx[0]),) + tuple(int(i) for i in idx[1:])
        count += n
    return None if first is None else (first[0], first, count)


def _fmt_index(index: tuple) -> str:
    return f"({index[0]})" if len(index) == 1 else str(index)


def check_finite(a, name: str, source: str | None = None) -> None:
    """Raises a ValueError at the first NaN or infinity of a float array."""
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating) or a.ndim == 0:
        if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a):
            raise ValueError(f"Invalid data in `{name}`{_where(source)}: expected finite values. "
                             f"Received: {a}")
        return
    found = _first_bad(a, lambda c: ~np.isfinite(c))
    if found:
        example, index, count = found
        raise ValueError(
            f"Invalid data in `{name}`{_where(source)}: expected finite values. Received: "
            f"{a[index].item()} at example {example} (element {_fmt_index(index)}); {count} "
            f"non-finite value{'s' if count > 1 else ''} in all.")


def check_range(a, name: str, value_range: tuple[float, float], range_of: str = "",
                source: str | None = None) -> None:
    """Raises a ValueError at the first value of a float array outside `value_range`.

    `range_of` says where the range comes from (e.g. an attack's repr), for the message.
    """
    a = np.asarray(a)
    lo, hi = value_range
    if not np.issubdtype(a.dtype, np.floating) or a.size == 0 or a.ndim == 0:
        return
    # Rounding in scaling (x / 255.0 in float32) stays within a few ulps of the bounds.
    tol = 1e-6 * max(1.0, abs(hi - lo))
    found = _first_bad(a, lambda c: (c < lo - tol) | (c > hi + tol))
    if found:
        example, index, count = found
        span = (float(np.nanmin(a)), float(np.nanmax(a)))
        example_scale = (f" (e.g. x / {span[1]:g} for values from 0 to {span[1]:g})"
                         if lo == 0 and span[0] >= 0 else "")
        hint = (f" Scale the inputs into [{lo:g}, {hi:g}]{example_scale}, or set the attack's "
                "clip_min/clip_max to the data's range." if range_of else "")
        raise ValueError(
            f"Invalid data in `{name}`{_where(source)}: expected values in [{lo:g}, {hi:g}]"
            f"{', the input range of ' + range_of if range_of else ''}. Received: "
            f"{a[index]:g} at example {example} (element {_fmt_index(index)}); {count} values "
            f"outside, the data spans [{span[0]:g}, {span[1]:g}].{hint}")


def check_labels(y, name: str = "y", num_classes: int | None = None,
                 source: str | None = None) -> None:
    """Integer class labels in [0, num_classes) (shape (n,) or (n, 1)), or one-hot rows.

    Float labels with whole values (3.0) are accepted, as Keras' sparse losses
    accept them; `num_classes=None` checks only that labels are >= 0.
    """
    y = np.asarray(y)
    where = _where(source)
    if y.ndim == 2 and y.shape[1] > 1 and (num_classes is None or y.shape[1] == num_classes):
        check_finite(y, name, source)  # one-hot or soft labels
        return
    if y.ndim > 2 or (y.ndim == 2 and y.shape[1] != 1) or y.ndim == 0:
        expected = f"one-hot rows of length {num_classes}" if num_classes else "one-hot rows"
        raise ValueError(
            f"Invalid data in `{name}`{where}: expected integer class labels of shape (n,) or "
            f"(n, 1), or {expected}. Received: shape {y.shape}")
    y = y.reshape(-1)
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)) or \
            y.dtype == np.bool_:
        raise ValueError(f"Invalid data in `{name}`{where}: expected integer class labels. "
                         f"Received: dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.floating):
        check_finite(y, name, source)
        found = _first_bad(y, lambda c: c != np.round(c))
        if found:
            raise ValueError(
                f"Invalid data in `{name}`{where}: expected integer class labels. Received: "
                f"{y[found[0]].item()!r} at example {found[0]} (dtype {y.dtype})")
    hi = num_classes if num_classes else None
    found = _first_bad(y, lambda c: (c < 0) | (c >= hi) if hi else c < 0)
    if found:
        expected = f"[0, {num_classes})" if num_classes else ">= 0"
        raise ValueError(
            f"Invalid data in `{name}`{where}: expected class labels in {expected}"
            f"{' (the model has ' + str(num_classes) + ' outputs)' if num_classes else ''}. "
            f"Received: {y[found[0]].item()!r} at example {found[0]}; labels span "
            f"[{y.min().item()!r}, {y.max().item()!r}]")


def check_arrays(x, y=None, *, x_name: str = "x", y_name: str = "y",
                 num_classes: int | None = None, value_range: tuple[float, float] | None = None,
                 range_of: str = "", source: str | None = None) -> None:
    """All checks on in-memory data: lengths, finite inputs, labels, input range.

    Args:
      x: an array, or a nested structure (dict, list, tuple) of arrays.
      y: labels (see `check_labels`), or None.
      x_name, y_name: the names used in errors (`x_train`, `y_test`, ...).
      num_classes: the model's number of classes, if known.
      value_range: `(lo, hi)` every float input must lie in (an attack's
        `[clip_min, clip_max]`), or None.
      range_of: where `value_range` comes from, for the message.
      source: the file the data came from, for the message.

    Raises:
      ValueError: the first failed check, naming the array, the file, the
        first offending example and what was expected.
    """
    leaves = [(n, np.asarray(a)) for n, a in _leaves(x, x_name)]
    named = leaves + ([(y_name, np.asarray(y))] if y is not None else [])
    lengths = {n: (len(a) if a.ndim else None) for n, a in named}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"`{n}` has {k}" for n, k in lengths.items())
        expected = ("as many labels as inputs: the same number of examples (first axis) in "
                    "every array" if y is not None else
                    "the same number of examples (first axis) in every input")
        raise ValueError(f"Invalid data{_where(source)}: expected {expected}. Received: {listed}")
    for n, a in leaves:
        check_finite(a, n, source)
    if y is not None:
        check_labels(y, y_name, num_classes, source)
    if value_range is not None:
        for n, a in leaves:
            check_range(a, n, value_range, range_of, source)


def attack_range(attacks: Sequence) -> tuple[tuple[float, float] | None, str]:
    """The input range all `attacks` accept (the narrowest), and the attack that sets it."""
    lo, hi, lo_by, hi_by = -np.inf, np.inf, "", ""
    for a in attacks:
        if a is None:
            continue
        if getattr(a, "clip_min", None) is not None and a.clip_min > lo:
            lo, lo_by = a.clip_min, repr(a)
        if getattr(a, "clip_max", None) is not None and a.clip_max < hi:
            hi, hi_by = a.clip_max, repr(a)
    if lo == -np.inf and hi == np.inf:
        return None, ""
    by = lo_by if lo_by == hi_by or not hi_by else (hi_by if not lo_by else f"{lo_by} and {hi_by}")
    return (float(lo), float(hi)), f"the attack {by}"


def check_dataset_spec(ds, name: str = "x") -> None:
    """What a tf.data dataset's `element_spec` shows cheaply: the label dtype.

    The values are not read (that would cost up to an epoch).
    """
    spec = getattr(ds, "element_spec", None)
    if not isinstance(spec, tuple) or len(spec) < 2:
        return
    dtype = getattr(spec[1], "dtype", None)  # None: a per-replica spec, left alone
    if dtype is not None and (dtype.is_bool or not (dtype.is_integer or dtype.is_floating)):
        raise ValueError(
            f"Invalid data in `{name}`: expected a dataset of (inputs, labels[, index]) with "
            f"integer or float labels. Received: labels of dtype {dtype.name}")


def _is_dataset(x) -> bool:
    return hasattr(x, "element_spec")


def _num_classes(model) -> int | None:
    n = getattr(model, "num_classes", None)
    if n:
        return int(n)
    try:
        return int(model.outputs[0].shape[-1])
    except (AttributeError, IndexError, TypeError, ValueError):
        return None


def check_fit_arguments(model, x, y=None, validation_data=None) -> None:
    """The checks `DeadwoodModel.fit` runs before training: on `(x, y)` and
    `validation_data`, with labels in the model's classes and inputs in its
    attack's range. Generators and `PyDataset`s are not checked."""
    value_range, range_of = attack_range([getattr(model, "attack", None)])
    todo = [(x, y, "x", "y")]
    if isinstance(validation_data, (tuple, list)) and len(validation_data) >= 2:
        todo.append((validation_data[0], validation_data[1], "x_val", "y_val"))
    elif validation_data is not None:
        todo.append((validation_data, None, "x_val", "y_val"))
    for inputs, labels, x_name, y_name in todo:
        if _is_dataset(inputs):
            check_dataset_spec(inputs, x_name)
        elif inputs is not None and all(_is_array(a) for _, a in _leaves(inputs, x_name)):
            check_arrays(inputs, labels, x_name=x_name, y_name=y_name,
                         num_classes=_num_classes(model), value_range=value_range,
                         range_of=range_of)


def check_eval_arguments(model, x, y, attacks: Sequence) -> None:
    """The checks `evaluate_robustness` runs: labels in the model's classes and
    inputs inside every attack's `[clip_min, clip_max]`."""
    if _is_dataset(x):
        check_dataset_spec(x, "x")
        return
    value_range, range_of = attack_range(attacks)
    check_arrays(x, y, num_classes=_num_classes(model), value_range=value_range,
                 range_of=range_of)
