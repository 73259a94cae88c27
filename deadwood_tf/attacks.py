"""Adversarial examples (cleverhans' tf2 attacks) and robustness evaluation.

An attack is a callable `attack(model_fn, x, y=None) -> x_adv`, where
`model_fn(x)` returns logits; it knows nothing of training loops, so the
training step and the evaluator use the same objects. Both run inside
`tf.function`.

Example:

    pgd = PGD(eps=0.2, steps=20, step_size=0.02)
    evaluate_robustness(model, x_test, y_test, [FGSM(0.2), pgd])
    # {'clean': 0.98, 'fgsm_linf_0.2': 0.9, 'pgd20_linf_0.2': 0.83}
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Sequence

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

    def _perturb(self, model_fn, x, y, clip_min, clip_max):
        """The attack on one float tensor `x`; clip bounds broadcast against `x`."""
        raise NotImplementedError

    def __call__(self, model_fn: Callable, x, y=None):
        """Adversarial inputs of the same structure, dtypes and shapes as `x`."""
        entries = _entries(x)
        picked = self._selected(entries, lambda t: t.dtype)
        if self.eps == 0:
            return tf.nest.map_structure(tf.identity, x)
        if not tf.nest.is_nested(x):
            return tf.stop_gradient(self._perturb(model_fn, x, y, *self._bounds_of(0)))
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
        flat = self._perturb(lambda t: model_fn(rebuild(t)), tf.concat(parts, 1), y,
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

    def _perturb(self, model_fn, x, y, clip_min, clip_max):
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

    def _perturb(self, model_fn, x, y, clip_min, clip_max):
        return projected_gradient_descent(
            model_fn, x, self.eps, self.step_size, self.steps, self.norm, clip_min=clip_min,
            clip_max=clip_max, y=y, rand_init=self.random_start, sanity_checks=False)

    def get_config(self):
        return {**super().get_config(), "steps": self.steps, "step_size": self.step_size,
                "random_start": self.random_start}


class ARTAttack(Attack):
    """Base of the attacks run by the adversarial-robustness-toolbox (ART).

    They run eagerly on NumPy batches (not inside `tf.function`), so they serve
    evaluation only: `evaluate_robustness` accepts them, the training step
    does not. ART is an optional extra: `pip install "deadwood_tf[robustness]"`.
    """

    in_graph = False
    _batch_size = 128  # set to the batch given by each call

    def get_config(self):
        config = super().get_config()
        del config["inputs"]  # single-input models only
        return config

    def _classifier(self, model_fn, x):
        try:
            from art.estimators.classification import TensorFlowV2Classifier
        except ImportError as e:
            raise ImportError(
                f"{type(self).__name__} needs the adversarial-robustness-toolbox: "
                'pip install "deadwood_tf[robustness]" (adversarial-robustness-toolbox and '
                "multiprocess)") from e
        logits = model_fn(tf.constant(x[:1]))
        return TensorFlowV2Classifier(
            model=lambda t, training=False: model_fn(t), nb_classes=int(logits.shape[-1]),
            input_shape=tuple(x.shape[1:]),
            clip_values=None if self.clip_min is None else (self.clip_min, self.clip_max),
            loss_object=self._loss_object())

    def _loss_object(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def __call__(self, model_fn, x, y=None):
        x = np.asarray(x, dtype="float32")
        if self.eps == 0:
            return x
        # ART's own batch sizes (32 for APGD, 128 for Square) made the worst-case
        # check several times slower; each example is attacked independently, so
        # one batch of what the caller passes gives the same attack, faster.
        self._batch_size = max(1, len(x))
        attack = self._build(self._classifier(model_fn, x))
        y = None if y is None else np.asarray(y)
        return attack.generate(x, y=y)


@keras.saving.register_keras_serializable(package="deadwood_tf")
class SquareAttack(ARTAttack):
    """ART's Square Attack (Andriushchenko et al.): gradient-free, score-based.

    Far more adversarial examples under Square than under PGD means the
    robustness is gradient masking.
    """

    def __init__(self, eps, norm="linf", max_queries=1000, restarts=1, clip_min=0.0,
                 clip_max=1.0):
        super().__init__(eps, norm, clip_min, clip_max)
        self.max_queries = int(max_queries)
        self.restarts = int(restarts)
        if self.max_queries < 1 or self.restarts < 1:
            raise ValueError(
                "Invalid values for arguments `max_queries`, `restarts`: expected ints >= 1. "
                f"Received: max_queries={max_queries!r}, restarts={restarts!r}")

    @property
    def name(self) -> str:
        return f"square{self.max_queries}_{self.norm_name}_{self.eps:g}"

    def _build(self, classifier):
        from art.attacks.evasion import SquareAttack as ARTSquare

        return ARTSquare(estimator=classifier, norm=self.norm, eps=self.eps,
                         max_iter=self.max_queries, nb_restarts=self.restarts,
                         batch_size=self._batch_size, verbose=False)

    def get_config(self):
        return {**super().get_config(), "max_queries": self.max_queries,
                "restarts": self.restarts}


@keras.saving.register_keras_serializable(package="deadwood_tf")
class AutoAttack(ARTAttack):
    """ART's AutoAttack with an explicit list: APGD-CE (`apgd_steps`) then Square.

    ART's default list is far slower (it had not finished 100 MNIST digits in
    10 minutes on 2 CPU cores); this pair is the usual cheap, strong check.
    """

    def __init__(self, eps, norm="linf", apgd_steps=50, square_queries=1000, clip_min=0.0,
                 clip_max=1.0):
        super().__init__(eps, norm, clip_min, clip_max)
        self.apgd_steps = int(apgd_steps)
        self.square_queries = int(square_queries)

    @property
    def name(self) -> str:
        return f"autoattack_{self.norm_name}_{self.eps:g}"

    def _build(self, classifier):
        from art.attacks.evasion import AutoAttack as ARTAutoAttack
        from art.attacks.evasion import AutoProjectedGradientDescent
        from art.attacks.evasion import SquareAttack as ARTSquare

        step = 2 * self.eps / 10
        return ARTAutoAttack(
            estimator=classifier, norm=self.norm, eps=self.eps, eps_step=step,
            batch_size=self._batch_size, attacks=[
                AutoProjectedGradientDescent(
                    estimator=classifier, norm=self.norm, eps=self.eps, eps_step=step,
                    max_iter=self.apgd_steps, loss_type="cross_entropy",
                    batch_size=self._batch_size, verbose=False),
                ARTSquare(estimator=classifier, norm=self.norm, eps=self.eps,
                          max_iter=self.square_queries, batch_size=self._batch_size,
                          verbose=False),
            ])

    def get_config(self):
        return {**super().get_config(), "apgd_steps": self.apgd_steps,
                "square_queries": self.square_queries}


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


# ---------------------------------------------------------------- evaluation


def _as_arrays(x, y):
    """`(x, y)` as NumPy: `x` an array or a dict/list/tuple of arrays (several inputs)."""
    if isinstance(x, tf.data.Dataset):
        xs, ys = [], []
        for batch in x:
            xs.append(tf.nest.map_structure(np.asarray, batch[0]))
            ys.append(np.asarray(batch[1]))
        return tf.nest.map_structure(lambda *b: np.concatenate(b), *xs), np.concatenate(ys)
    if y is None:
        raise ValueError("Invalid value for argument `y`: labels are required with array inputs.")
    return tf.nest.map_structure(np.asarray, x), np.asarray(y)


def _input_spec(a):
    # Float inputs are attacked in float32; integer inputs (token ids) keep their dtype.
    dtype = tf.float32 if _is_float(a.dtype) else tf.as_dtype(a.dtype)
    return tf.TensorSpec([None, *a.shape[1:]], dtype)


def evaluate_robustness(model, x, y=None, attacks: Sequence[Attack] = (), batch_size: int = 256,
                        from_logits=None, verbose: int = 0) -> dict:
    """Clean and per-attack accuracy of a classifier.

    Args:
      model: a Keras 3 classifier (logits or softmax output), a pruned model
        or a `DeadwoodModel`.
      x, y: inputs (an array, or a dict/list/tuple of arrays for a model with
        several inputs) and integer (or one-hot) labels; or `x` a tf.data
        dataset of `(x, y)` batches and `y=None`.
      attacks: `Attack` objects (FGSM, PGD, and ART's SquareAttack and
        AutoAttack); each adversarial batch is made against `model` with the
        true labels.
      batch_size: examples per attack batch.

    Returns:
      `{"clean": acc, attack.name: acc, ...}` with accuracies in [0, 1].
    """
    from deadwood_tf import checks
    from deadwood_tf.prune import check_keras_model

    check_keras_model(model)
    checks.check_eval_arguments(model, x, y, attacks)
    x, y = _as_arrays(x, y)
    if y.ndim == 2 and y.shape[-1] > 1:
        y = y.argmax(-1)
    y = y.astype("int64").reshape(-1)
    n = len(tf.nest.flatten(x)[0])
    if n != len(y):
        raise ValueError(
            f"Invalid values for arguments `x`, `y`: expected as many labels as inputs. "
            f"Received: {n} inputs and {len(y)} labels"
        )
    for a in attacks:
        if not isinstance(a, Attack):
            raise ValueError(
                "Invalid value for argument `attacks`: expected deadwood_tf.attacks.Attack "
                f"objects (FGSM, PGD, ...). Received: {a!r}"
            )
        if tf.nest.is_nested(x) and not getattr(a, "in_graph", True):
            raise ValueError(
                f"Invalid value for argument `attacks`: {type(a).__name__} (ART) takes "
                f"single-input models; this one has several inputs. Received: {a!r}")
    for a in attacks:
        if hasattr(a, "_bound_layer"):  # an EmbeddingAttack perturbs this model's layer
            a.check_inputs(model)
    fn = logits_fn(model, from_logits)
    model_fn = lambda t: fn(t, training=False)  # noqa: E731

    signature = [tf.nest.map_structure(_input_spec, x), tf.TensorSpec([None], tf.int64)]

    def counter(attack):
        if attack is not None and not getattr(attack, "in_graph", True):
            def eager(xb, yb):
                x_adv = attack(model_fn, xb.numpy(), yb.numpy())
                return int(np.sum(np.argmax(model_fn(tf.constant(x_adv)), -1) == yb.numpy()))
            return eager

        # One trace per attack: the batch dimension is left open.
        @tf.function(input_signature=signature)
        def correct(xb, yb):
            logits = model_fn(xb) if attack is None else attack.run(model_fn,
                                                                     attack(model_fn, xb, yb))
            return tf.reduce_sum(tf.cast(tf.argmax(logits, -1) == yb, tf.int64))
        return correct

    results = {}
    names = ["clean"] + [a.name for a in attacks]
    progbar = keras.utils.Progbar(len(names) * math.ceil(n / batch_size)) if verbose else None
    for name, attack in zip(names, [None, *attacks]):
        correct = counter(attack)
        total = 0
        for start in range(0, n, batch_size):
            xb = tf.nest.map_structure(
                lambda a, spec: tf.convert_to_tensor(a[start:start + batch_size], spec.dtype),
                x, signature[0])
            yb = tf.convert_to_tensor(y[start:start + batch_size])
            total += int(correct(xb, yb))
            if progbar:
                progbar.add(1)
        results[name] = total / n
    return results


# ---------------------------------------------------------------- APGD and attacks by name


class DifferenceOfLogitsRatio:
    """APGD-DLR's loss (Croce and Hein, 2020), vectorised, as ART's classifier calls it.

    `-(z_y - max_{i != y} z_i) / (z_(1) - z_(3))` per example, the `z_(k)` the
    sorted logits; the same values as the loss ART builds for
    `loss_type="difference_logits_ratio"`, whose TensorFlow form loops over the
    examples in Python and made APGD-DLR 3x slower than APGD-CE. `y_true` is
    one-hot (ART passes it so); `reduction` is set by ART: "none", "sum" or a mean.
    """

    def __init__(self):
        self.reduction = "sum_over_batch_size"

    def __call__(self, y_true, y_pred):
        z = tf.convert_to_tensor(y_pred)
        y = tf.argmax(tf.convert_to_tensor(y_true), axis=1, output_type=tf.int32)
        z_y = tf.gather(z, y, axis=1, batch_dims=1)
        is_y = tf.one_hot(y, tf.shape(z)[1], on_value=True, off_value=False)
        other = tf.reduce_max(tf.where(is_y, tf.fill(tf.shape(z), z.dtype.min), z), axis=1)
        top = tf.math.top_k(z, k=3).values
        dlr = -(z_y - other) / (top[:, 0] - top[:, 2])
        if self.reduction == "none":
            return dlr
        return tf.reduce_sum(dlr) if self.reduction == "sum" else tf.reduce_mean(dlr)


@keras.saving.register_keras_serializable(package="deadwood_tf")
class APGD(ARTAttack):
    """ART's Auto-PGD (Croce and Hein, 2020) with one loss: "ce" or "dlr".

    APGD-DLR's loss is invariant to the logits' scale, so it catches models
    whose robustness to PGD on cross-entropy comes from saturated logits.
    Needs at least 3 classes for "dlr". Evaluation only (runs eagerly).
    """

    LOSSES = {"ce": "cross_entropy", "dlr": "difference_logits_ratio"}

    def __init__(self, eps, norm="linf", steps=100, loss="ce", restarts=1, clip_min=0.0,
                 clip_max=1.0):
        super().__init__(eps, norm, clip_min, clip_max)
        if loss not in self.LOSSES:
            raise ValueError(f"Invalid value for argument `loss`: expected one of "
                             f"{tuple(self.LOSSES)}. Received: loss={loss!r}")
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1 \
                or isinstance(restarts, bool) or not isinstance(restarts, (int, np.integer)) \
                or restarts < 1:
            raise ValueError(
                "Invalid values for arguments `steps`, `restarts`: expected ints >= 1. "
                f"Received: steps={steps!r}, restarts={restarts!r}")
        self.steps, self.loss, self.restarts = int(steps), loss, int(restarts)

    @property
    def name(self) -> str:
        return f"apgd_{self.loss}{self.steps}_{self.norm_name}_{self.eps:g}"

    def _build(self, classifier):
        from art.attacks.evasion import AutoProjectedGradientDescent

        return AutoProjectedGradientDescent(
            estimator=classifier, norm=self.norm, eps=self.eps, eps_step=2 * self.eps / 10,
            max_iter=self.steps, nb_random_init=self.restarts,
            # DLR: the classifier carries the vectorised loss (`_loss_object`).
            loss_type=None if self.loss == "dlr" else self.LOSSES[self.loss],
            batch_size=self._batch_size, verbose=False)

    def _loss_object(self):
        if self.loss == "dlr":
            return DifferenceOfLogitsRatio()
        return super()._loss_object()

    def get_config(self):
        return {**super().get_config(), "steps": self.steps, "loss": self.loss,
                "restarts": self.restarts}


# The one place where attacks are built from names (configs, command lines).
ATTACKS = {"fgsm": FGSM, "pgd": PGD, "square": SquareAttack, "apgd": APGD,
           "autoattack": AutoAttack}
# Those a training step can run (inside `tf.function`); ART's run eagerly, for evaluation only.
TRAINING_ATTACKS = tuple(name for name, cls in ATTACKS.items() if getattr(cls, "in_graph", True))


def make_attack(name: str, eps: float, **kwargs) -> Attack:
    """The attack called `name` (a key of `ATTACKS`) at radius `eps`.

    `kwargs` are the class's own arguments (`norm`, `steps`, `step_size`,
    `random_start`, `max_queries`, `loss`, `clip_min`, ...); an argument the
    class does not take is an error, so a misspelt setting cannot pass unseen.
    """
    import inspect

    if name not in ATTACKS:
        raise ValueError(f"Invalid value for argument `name`: expected one of {tuple(ATTACKS)}. "
                         f"Received: name={name!r}")
    cls = ATTACKS[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(f"Invalid arguments for the {name!r} attack: {unknown}; it takes "
                         f"{sorted(accepted)}. Received: {kwargs}")
    return cls(eps, **kwargs)


def from_config(c) -> Attack:
    """`make_attack` from a mapping (e.g. the pipeline's `config.attack`): its
    `name`, `eps` and whichever of the class's arguments it holds; other keys
    are ignored, so one config section can carry settings of several attacks."""
    import inspect

    c = dict(c)
    if "name" not in c or "eps" not in c:
        raise ValueError(f"Invalid attack config: expected keys `name` and `eps`. Received: {c}")
    cls = ATTACKS.get(c["name"])
    accepted = (set(inspect.signature(cls.__init__).parameters) - {"self", "eps"}
                if cls else set())
    return make_attack(c["name"], c["eps"], **{k: v for k, v in c.items() if k in accepted})


def eval_attacks_from_config(config) -> list:
    """The evaluation attacks of a pipeline or benchmark config: FGSM (when
    `eval.fgsm`), then PGD with `eval.pgd_steps` steps of `eval.pgd_step_size`
    and a random start, both at radius `eval.eps` with the norm and input
    range (`norm`, `clip_min`, `clip_max`) of the training attack `config.attack`."""
    e, a = config.eval, config.attack
    common = dict(norm=a.norm, clip_min=a.clip_min, clip_max=a.clip_max)
    out = [make_attack("fgsm", e.eps, **common)] if e.fgsm else []
    out.append(make_attack("pgd", e.eps, steps=e.pgd_steps, step_size=e.pgd_step_size,
                           random_start=True, **common))
    return out
