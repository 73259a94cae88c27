"""Adversarial examples (cleverhans' tf2 attacks) and robustness evaluation.

An attack is a callable `attack(model_fn, x, y=None) -> x_adv`, where
`model_fn(x)` returns logits; it knows nothing of training loops, so the
training step and the evaluator use the same objects. Both run inside
`tf.function`.

Example:

>>> pgd = PGD(eps=0.2, steps=20, step_size=0.02)
>>> evaluate_robustness(model, x_test, y_test, [FGSM(0.2), pgd])
{'clean': 0.98, 'fgsm_linf_0.2': 0.9, 'pgd20_linf_0.2': 0.83}
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


class Attack:
    """Base class: an L-inf or L2 attack of radius `eps` on inputs in [clip_min, clip_max]."""

    def __init__(self, eps, norm="linf", clip_min=0.0, clip_max=1.0):
        self.eps = _check_non_negative(eps, "eps")
        self.norm = _check_norm(norm)
        self.clip_min = None if clip_min is None else float(clip_min)
        self.clip_max = None if clip_max is None else float(clip_max)
        if self.clip_min is not None and self.clip_max is not None and self.clip_min >= self.clip_max:
            raise ValueError(
                "Invalid values for arguments `clip_min`, `clip_max`: expected "
                f"clip_min < clip_max. Received: clip_min={clip_min}, clip_max={clip_max}"
            )

    @property
    def norm_name(self) -> str:
        return "linf" if self.norm == np.inf else "l2"

    def __call__(self, model_fn: Callable, x, y=None):
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"eps": self.eps, "norm": self.norm_name, "clip_min": self.clip_min,
                "clip_max": self.clip_max}

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

    def __call__(self, model_fn, x, y=None):
        if self.eps == 0:
            return tf.identity(x)
        return tf.stop_gradient(fast_gradient_method(
            model_fn, x, self.eps, self.norm, clip_min=self.clip_min,
            clip_max=self.clip_max, y=y, sanity_checks=False))


@keras.saving.register_keras_serializable(package="deadwood_tf")
class PGD(Attack):
    """Projected gradient descent (Madry et al.) with an optional random start.

    Args:
      eps: radius of the perturbation ball (same units as the inputs).
      steps: number of gradient steps.
      step_size: size of each step; default `2.5 * eps / steps`.
      norm: "linf" (np.inf) or "l2" (2).
      random_start: start from a uniform random point of the ball.
    """

    def __init__(self, eps, steps=10, step_size=None, norm="linf", random_start=True,
                 clip_min=0.0, clip_max=1.0):
        super().__init__(eps, norm, clip_min, clip_max)
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(
                f"Invalid value for argument `steps`: expected an int >= 1. Received: steps={steps!r}"
            )
        self.steps = int(steps)
        self.step_size = (2.5 * self.eps / self.steps if step_size is None
                          else _check_non_negative(step_size, "step_size"))
        self.random_start = bool(random_start)

    @property
    def name(self) -> str:
        return f"pgd{self.steps}_{self.norm_name}_{self.eps:g}"

    def __call__(self, model_fn, x, y=None):
        if self.eps == 0:
            return tf.identity(x)
        return tf.stop_gradient(projected_gradient_descent(
            model_fn, x, self.eps, self.step_size, self.steps, self.norm,
            clip_min=self.clip_min, clip_max=self.clip_max, y=y,
            rand_init=self.random_start, sanity_checks=False))

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
            loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    def __call__(self, model_fn, x, y=None):
        x = np.asarray(x, dtype="float32")
        if self.eps == 0:
            return x
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
                         max_iter=self.max_queries, nb_restarts=self.restarts, verbose=False)

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
            attacks=[
                AutoProjectedGradientDescent(
                    estimator=classifier, norm=self.norm, eps=self.eps, eps_step=step,
                    max_iter=self.apgd_steps, loss_type="cross_entropy", verbose=False),
                ARTSquare(estimator=classifier, norm=self.norm, eps=self.eps,
                          max_iter=self.square_queries, verbose=False),
            ])

    def get_config(self):
        return {**super().get_config(), "apgd_steps": self.apgd_steps,
                "square_queries": self.square_queries}


# ---------------------------------------------------------------- logits


def _output_layer(model):
    """The layer producing a Sequential/functional model's single output, unwrapped."""
    from deadwood_tf.pruning_wrapper import PruningWrapper

    layer = model
    while isinstance(layer, keras.Model):
        if isinstance(layer, keras.Sequential):
            layer = layer.layers[-1] if layer.layers else None
        elif type(layer).__name__ == "Functional" and len(layer.outputs) == 1:
            layer = layer.outputs[0]._keras_history.operation
        else:
            return None
    while isinstance(layer, PruningWrapper):
        layer = layer.layer
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


def outputs_probabilities(model) -> bool:
    """Whether `model`'s last operation is a softmax (so it outputs probabilities)."""
    layer = _output_layer(model)
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


# ---------------------------------------------------------------- evaluation


def _as_arrays(x, y):
    if isinstance(x, tf.data.Dataset):
        xs, ys = [], []
        for batch in x:
            xs.append(np.asarray(batch[0]))
            ys.append(np.asarray(batch[1]))
        return np.concatenate(xs), np.concatenate(ys)
    if y is None:
        raise ValueError("Invalid value for argument `y`: labels are required with array inputs.")
    return np.asarray(x), np.asarray(y)


def evaluate_robustness(model, x, y=None, attacks: Sequence[Attack] = (), batch_size: int = 256,
                        from_logits=None, verbose: int = 0) -> dict:
    """Clean and per-attack accuracy of a classifier.

    Args:
      model: a Keras 3 classifier (logits or softmax output), a wrapped model
        or a `DeadwoodModel`.
      x, y: inputs and integer (or one-hot) labels; or `x` a tf.data dataset
        of `(x, y)` batches and `y=None`.
      attacks: `Attack` objects (FGSM, PGD, and ART's SquareAttack and
        AutoAttack); each adversarial batch is made against `model` with the
        true labels.
      batch_size: examples per attack batch.

    Returns:
      `{"clean": acc, attack.name: acc, ...}` with accuracies in [0, 1].
    """
    from deadwood_tf.prune import check_keras_model

    check_keras_model(model)
    x, y = _as_arrays(x, y)
    if y.ndim == 2 and y.shape[-1] > 1:
        y = y.argmax(-1)
    y = y.astype("int64").reshape(-1)
    if len(x) != len(y):
        raise ValueError(
            f"Invalid values for arguments `x`, `y`: expected as many labels as inputs. "
            f"Received: {len(x)} inputs and {len(y)} labels"
        )
    for a in attacks:
        if not isinstance(a, Attack):
            raise ValueError(
                "Invalid value for argument `attacks`: expected deadwood_tf.attacks.Attack "
                f"objects (FGSM, PGD, ...). Received: {a!r}"
            )
    fn = logits_fn(model, from_logits)
    model_fn = lambda t: fn(t, training=False)  # noqa: E731

    signature = [tf.TensorSpec([None, *x.shape[1:]], tf.float32), tf.TensorSpec([None], tf.int64)]

    def counter(attack):
        if attack is not None and not getattr(attack, "in_graph", True):
            def eager(xb, yb):
                x_adv = attack(model_fn, xb.numpy(), yb.numpy())
                return int(np.sum(np.argmax(model_fn(tf.constant(x_adv)), -1) == yb.numpy()))
            return eager

        # One trace per attack: the batch dimension is left open.
        @tf.function(input_signature=signature)
        def correct(xb, yb):
            if attack is not None:
                xb = attack(model_fn, xb, yb)
            return tf.reduce_sum(tf.cast(tf.argmax(model_fn(xb), -1) == yb, tf.int64))
        return correct

    results = {}
    names = ["clean"] + [a.name for a in attacks]
    progbar = keras.utils.Progbar(len(names) * math.ceil(len(x) / batch_size)) if verbose else None
    for name, attack in zip(names, [None, *attacks]):
        correct = counter(attack)
        total = 0
        for start in range(0, len(x), batch_size):
            xb = tf.convert_to_tensor(x[start:start + batch_size], dtype=tf.float32)
            yb = tf.convert_to_tensor(y[start:start + batch_size])
            total += int(correct(xb, yb))
            if progbar:
                progbar.add(1)
        results[name] = total / len(x)
    return results


# ---------------------------------------------------------------- APGD and attacks by name


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
            loss_type=self.LOSSES[self.loss], verbose=False)

    def get_config(self):
        return {**super().get_config(), "steps": self.steps, "loss": self.loss,
                "restarts": self.restarts}


# The one place where attacks are built from names (configs, command lines).
ATTACKS = {"fgsm": FGSM, "pgd": PGD, "square": SquareAttack, "apgd": APGD,
           "autoattack": AutoAttack}


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
