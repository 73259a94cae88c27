"""Gradient attacks (cleverhans' tf2 FGSM and PGD) and the model's logits.

An attack is a callable `attack(model_fn, x, y=None) -> x_adv`, where
`model_fn(x)` returns logits; it knows nothing of training loops, so the
training step and the evaluator (`robustness.evaluate_robustness`) use the
same objects. Both run inside `tf.function`. `logits_fn` gives the logits of
a classifier that ends in a softmax, for the attacks and the trainer alike.

>>> import keras, numpy as np
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
>>> x = np.random.default_rng(0).uniform(0.2, 0.8, (5, 4)).astype("float32")
>>> x_adv = PGD(0.1, steps=3)(logits_fn(model), x, np.zeros(5, "int64"))
>>> bool(np.max(np.abs(x_adv - x)) <= 0.1 + 1e-6)   # inside the L-inf ball
True
>>> PGD(0.1, steps=3).name
'pgd3_linf_0.1'
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent

from deadwood_tf import compat

_NORMS = {"inf": np.inf, "linf": np.inf, "l_inf": np.inf, "2": 2, "l2": 2}


def _check_norm(norm):
    if isinstance(norm, str) and norm.lower() in _NORMS:
        return _NORMS[norm.lower()]
    if norm in (np.inf, 2) and not isinstance(norm, bool):
        return np.inf if norm == np.inf else 2
    raise ValueError(
        "Invalid value for argument `norm`: expected np.inf / 'linf' or 2 / 'l2'. "
        f"Received: norm={norm!r}"
    )


def _check_non_negative(value, name):
    try:
        ok = not isinstance(value, bool) and float(value) >= 0 and math.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a finite number >= 0. "
            f"Received: {name}={value!r}"
        )
    return float(value)


def _check_clip(clip_min, clip_max, key=None):
    if clip_min is not None and clip_max is not None and clip_min >= clip_max:
        where = "" if key is None else f" for input {key!r}"
        raise ValueError(
            f"Invalid values for arguments `clip_min`, `clip_max`: expected clip_min < clip_max"
            f"{where}. Received: clip_min={clip_min}, clip_max={clip_max}"
        )


def _clip_value(value, name):
    """A bound: None, a number, or a dict {input name or position: number or None}."""
    if value is None:
        return None
    if isinstance(value, dict):
        # JSON (a .keras config) turns integer keys into strings: positions come back.
        return {int(k) if isinstance(k, str) and k.isdigit() else k: _clip_value(v, name)
                for k, v in value.items()}
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a number, None, or a dict from "
            f"input names/positions to numbers. Received: {name}={value!r}") from None


def _is_float(dtype) -> bool:
    return tf.as_dtype(dtype).is_floating


def _entries(x):
    """`[(key, leaf)]` of a model's inputs: dict keys, list/tuple positions, or (0, x)."""
    if isinstance(x, dict):
        return list(x.items())
    if isinstance(x, (list, tuple)):
        return list(enumerate(x))
    return [(0, x)]


def _model_inputs(model):
    """The model's input structure of KerasTensors, or None when it is unknown
    (a subclassed model never called on symbolic inputs)."""
    try:
        return model.input
    except (AttributeError, ValueError):
        inputs = getattr(model, "inputs", None)
        return inputs[0] if inputs and len(inputs) == 1 else inputs


class Attack:
    """Base class: an L-inf or L2 attack of radius `eps` on inputs in [clip_min, clip_max].

    Models with several inputs (a dict, list or tuple of tensors): every
    floating-point input is perturbed and integer inputs (token ids, padding
    masks) are passed through unchanged; `inputs` picks the perturbed inputs
    instead, by dict key or by list position. The perturbed inputs are
    attacked jointly, as one flattened vector: under L-inf each stays within
    `eps`, under L2 their joint perturbation does.

    Args:
      eps: radius of the perturbation ball (same units as the inputs), >= 0.
      norm: "linf" (np.inf) or "l2" (2).
      clip_min, clip_max: range of valid input values; None for no bound; or
        a dict from input key (name or position) to a number or None, for
        per-input ranges (an input missing from the dict is unbounded).
      inputs: None (every floating-point input), or a list of dict keys or
        list positions of the inputs to perturb.
    """

    def __init__(self, eps, norm="linf", clip_min=0.0, clip_max=1.0, inputs=None):
        self.eps = _check_non_negative(eps, "eps")
        self.norm = _check_norm(norm)
        self.clip_min = _clip_value(clip_min, "clip_min")
        self.clip_max = _clip_value(clip_max, "clip_max")
        if isinstance(self.clip_min, dict) or isinstance(self.clip_max, dict):
            for key in {*(self.clip_min or {}), *(self.clip_max or {})}:
                _check_clip(self._bound(self.clip_min, key), self._bound(self.clip_max, key), key)
        else:
            _check_clip(self.clip_min, self.clip_max)
        if inputs is not None:
            if isinstance(inputs, (str, int)):
                inputs = [inputs]
            inputs = list(inputs)
            if not inputs or not all(isinstance(k, (str, int)) and not isinstance(k, bool)
                                     for k in inputs):
                raise ValueError(
                    "Invalid value for argument `inputs`: expected None or a non-empty list of "
                    f"input names (str) or positions (int). Received: inputs={inputs!r}")
        self.inputs = inputs

    @property
    def norm_name(self) -> str:
        return "linf" if self.norm == np.inf else "l2"

    @staticmethod
    def _bound(bound, key):
        return bound.get(key) if isinstance(bound, dict) else bound

    def _selected(self, entries, dtype_of):
        """Keys of the entries to perturb; ValueError when none or a picked one is missing."""
        keys = [k for k, _ in entries]
        if self.inputs is None:
            picked = [k for k, leaf in entries if _is_float(dtype_of(leaf))]
            if not picked:
                raise ValueError(
                    f"Invalid value for argument `attack`: {self!r} perturbs floating-point "
                    "inputs, but the model has none (input dtypes: "
                    f"{ {k: tf.as_dtype(dtype_of(l)).name for k, l in entries} }). Pass "
                    "attack=None to prune without the robustness constraint.")
            return picked
        for k in self.inputs:
            if k not in keys:
                raise ValueError(
                    f"Invalid value for argument `inputs`: expected keys of the model's inputs "
                    f"(dict names or list positions: {keys}). Received: inputs={self.inputs!r}")
            if not _is_float(dtype_of(dict(entries)[k])):
                raise ValueError(
                    f"Invalid value for argument `inputs`: input {k!r} has dtype "
                    f"{tf.as_dtype(dtype_of(dict(entries)[k])).name}; only floating-point inputs "
                    f"can be perturbed. Received: inputs={self.inputs!r}")
        return list(self.inputs)

    def check_inputs(self, model) -> None:
        """Raises ValueError if this attack cannot apply to `model`'s inputs
        (no floating-point input, a picked input or a per-input bound the model lacks). Models
        whose inputs are unknown before a call (subclassed) are checked at the
        first call instead."""
        inputs = _model_inputs(model)
        if inputs is None:
            return
        entries = _entries(inputs)
        self._selected(entries, lambda t: t.dtype)
        keys = [k for k, _ in entries]
        for name in ("clip_min", "clip_max"):
            bound = getattr(self, name)
            unknown = [k for k in bound if k not in keys] if isinstance(bound, dict) else []
            if unknown:
                raise ValueError(
                    f"Invalid value for argument `{name}`: expected keys of the model's inputs "
                    f"({keys}). Received: {name}={bound!r}")

    def _bounds_of(self, key):
        """(clip_min, clip_max) of one input: both None, or both numbers (cleverhans
        wants both or neither; a missing one is +-inf)."""
        low, high = self._bound(self.clip_min, key), self._bound(self.clip_max, key)
        if low is None and high is None:
            return None, None
        return (-np.inf if low is None else low), (np.inf if high is None else high)

    def _vector_bounds(self, keys, sizes):
        """Per-element bounds of the flat vector of the inputs `keys` (of `sizes` elements)."""
        bounds = [self._bounds_of(k) for k in keys]
        if all(low is None for low, _ in bounds):
            return None, None
        bounds = [(-np.inf, np.inf) if low is None else (low, high) for low, high in bounds]
        return tuple(
            tf.concat([tf.fill([n], tf.constant(b[i], tf.float32)) for b, n in zip(bounds, sizes)
                       ], 0) for i in (0, 1))

    def perturb(self, model_fn, x, y, clip_min, clip_max):
        """The attack on one float tensor `x`; clip bounds broadcast against `x`."""
        raise NotImplementedError

    def __call__(self, model_fn: Callable, x, y=None):
        """Adversarial inputs of the same structure, dtypes and shapes as `x`."""
        entries = _entries(x)
        picked = self._selected(entries, lambda t: t.dtype)
        if self.eps == 0:
            return tf.nest.map_structure(tf.identity, x)
        if not tf.nest.is_nested(x):
            return tf.stop_gradient(self.perturb(model_fn, x, y, *self._bounds_of(0)))
        # Several inputs: one flat float vector per example, split back for the model.
        leaves = dict(entries)
        parts = [tf.reshape(tf.cast(leaves[k], tf.float32), [tf.shape(leaves[k])[0], -1])
                 for k in picked]
        sizes = [tf.shape(p)[1] for p in parts]

        def rebuild(flat):
            new = dict(leaves)
            for k, part in zip(picked, tf.split(flat, sizes, axis=1)):
                new[k] = tf.cast(tf.reshape(part, tf.shape(leaves[k])), leaves[k].dtype)
            if isinstance(x, dict):
                return new
            seq = [new[i] for i in range(len(entries))]
            return seq if isinstance(x, list) else tuple(seq)

        clip_min, clip_max = self._vector_bounds(picked, sizes)
        flat = self.perturb(lambda t: model_fn(rebuild(t)), tf.concat(parts, 1), y,
                             clip_min, clip_max)
        return tf.nest.map_structure(tf.stop_gradient, rebuild(flat))

    def run(self, fn, x_adv):
        """`fn` (a model function) on what `__call__` returned: here the adversarial
        inputs themselves; an attack that perturbs inside the model (in embedding
        space) applies its perturbation around the call."""
        return fn(x_adv)

    def get_config(self) -> dict:
        return {"eps": self.eps, "norm": self.norm_name, "clip_min": self.clip_min,
                "clip_max": self.clip_max, "inputs": self.inputs}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@keras.saving.register_keras_serializable(package="deadwood_tf")
class FGSM(Attack):
    """Fast gradient (sign) method, one step of size `eps`."""

    @property
    def name(self) -> str:
        return f"fgsm_{self.norm_name}_{self.eps:g}"

    def perturb(self, model_fn, x, y, clip_min, clip_max):
        return fast_gradient_method(model_fn, x, self.eps, self.norm, clip_min=clip_min,
                                    clip_max=clip_max, y=y, sanity_checks=False)


@keras.saving.register_keras_serializable(package="deadwood_tf")
class PGD(Attack):
    """Projected gradient descent (Madry et al.) with an optional random start.

    Args:
      eps: radius of the perturbation ball (same units as the inputs).
      steps: number of gradient steps.
      step_size: size of each step, at most `eps`; default
        `min(eps, 2.5 * eps / steps)` (cleverhans refuses a step larger than
        the ball, which `2.5 * eps / steps` is for one or two steps).
      norm: "linf" (np.inf) or "l2" (2).
      random_start: start from a uniform random point of the ball.
      clip_min, clip_max, inputs: as for `Attack` (several inputs, per-input ranges).
    """

    def __init__(self, eps, steps=10, step_size=None, norm="linf", random_start=True,
                 clip_min=0.0, clip_max=1.0, inputs=None):
        super().__init__(eps, norm, clip_min, clip_max, inputs)
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(
                f"Invalid value for argument `steps`: expected an int >= 1. Received: steps={steps!r}"
            )
        self.steps = int(steps)
        if step_size is None:
            step_size = min(self.eps, 2.5 * self.eps / self.steps)
        else:
            step_size = _check_non_negative(step_size, "step_size")
            if step_size > self.eps:
                raise ValueError(
                    f"Invalid value for argument `step_size`: expected a number <= eps={self.eps:g} "
                    f"(a step cannot leave the ball). Received: step_size={step_size!r}")
        self.step_size = step_size
        self.random_start = bool(random_start)

    @property
    def name(self) -> str:
        return f"pgd{self.steps}_{self.norm_name}_{self.eps:g}"

    def perturb(self, model_fn, x, y, clip_min, clip_max):
        return projected_gradient_descent(
            model_fn, x, self.eps, self.step_size, self.steps, self.norm, clip_min=clip_min,
            clip_max=clip_max, y=y, rand_init=self.random_start, sanity_checks=False)

    def get_config(self):
        return {**super().get_config(), "steps": self.steps, "step_size": self.step_size,
                "random_start": self.random_start}


# ---------------------------------------------------------------- logits


def _output_layer(model, output=None):
    """The layer producing a Sequential/functional model's single output (or, with
    `output`, its output at that flat position)."""
    layer = model
    while isinstance(layer, keras.Model):
        if isinstance(layer, keras.Sequential):
            layer = layer.layers[-1] if layer.layers else None
        elif type(layer).__name__ == "Functional" and len(layer.outputs) == 1:
            layer = compat.producing_operation(layer.outputs[0])
        elif type(layer).__name__ == "Functional" and output is not None and layer is model:
            layer = compat.producing_operation(layer.outputs[output])
        else:
            return None
    return layer


def _is_softmax(fn) -> bool:
    return fn is keras.activations.softmax or getattr(fn, "__name__", "") == "softmax"


@contextlib.contextmanager
def _softmax_removed(layer):
    """Temporarily turns the model's final softmax into the identity."""
    if isinstance(layer, keras.layers.Softmax):
        layer.call = lambda inputs, *a, **k: inputs  # shadows the class's call
        try:
            yield
        finally:
            del layer.call
    else:
        original = layer.activation
        layer.activation = keras.activations.linear
        try:
            yield
        finally:
            layer.activation = original


def outputs_probabilities(model, output=None) -> bool:
    """Whether `model`'s last operation (on its output at flat position `output`,
    for a model with several) is a softmax (so it outputs probabilities)."""
    layer = _output_layer(model, output)
    if layer is None:
        return False
    if isinstance(layer, keras.layers.Softmax):
        return True
    return _is_softmax(getattr(layer, "activation", None))


def logits_fn(model, from_logits=None) -> Callable:
    """A function `fn(x, training=False) -> logits` for a classifier `model`.

    If the model ends in a softmax (a `Softmax` layer, or a layer with
    `activation="softmax"`), the softmax is skipped while the function runs,
    which recovers the exact logits; `from_logits=False` on a model whose
    softmax cannot be located falls back to `log(probabilities)`.
    """
    layer = _output_layer(model)
    detected = outputs_probabilities(model)
    if from_logits is None:
        from_logits = not detected
    if from_logits:
        return lambda x, training=False: model(x, training=training)
    if detected:
        def fn(x, training=False):
            with _softmax_removed(layer):
                return model(x, training=training)
        return fn
    return lambda x, training=False: tf.math.log(
        tf.clip_by_value(model(x, training=training), 1e-12, 1.0))


def outputs_fn(model, from_logits=None, output=0) -> Callable:
    """`fn(x, training=False) -> (logits, flat outputs)` for a model with several
    outputs: the class scores at flat position `output` as logits (a final
    softmax skipped, as `logits_fn` does), and every output as the call gave it
    (the class scores' layer without its softmax), in one pass."""
    layer = _output_layer(model, output)
    detected = outputs_probabilities(model, output)
    if from_logits is None:
        from_logits = not detected

    def fn(x, training=False):
        removed = not from_logits and detected
        with _softmax_removed(layer) if removed else contextlib.nullcontext():
            flat = keras.tree.flatten(model(x, training=training))
        head = flat[output]
        if not from_logits and not detected:
            head = tf.math.log(tf.clip_by_value(head, 1e-12, 1.0))
        return head, flat
    return fn
