"""Robustness evaluation: a classifier's clean and per-attack accuracy.

`evaluate_robustness` takes a model, data and `Attack` objects (the gradient
attacks of `gradient_attacks`, ART's of `art_attacks`, `EmbeddingAttack`);
it knows no pipeline config (`attack_config` builds attacks from one).

>>> import keras, numpy as np
>>> from deadwood_tf.attacks import FGSM, PGD
>>> keras.utils.set_random_seed(0)
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
>>> x = np.random.default_rng(0).uniform(0, 1, (64, 4)).astype("float32")
>>> y = np.argmax(model.predict(x, verbose=0), -1)   # the model is right on every input
>>> acc = evaluate_robustness(model, x, y, [FGSM(0.2), PGD(0.2, steps=5)])
>>> sorted(acc), acc["clean"]
(['clean', 'fgsm_linf_0.2', 'pgd5_linf_0.2'], 1.0)
>>> acc["pgd5_linf_0.2"] <= acc["fgsm_linf_0.2"] < 1.0   # attacks find mistakes
True
"""

from __future__ import annotations

import math
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from deadwood_tf import checks
from deadwood_tf.embedding_attack import EmbeddingAttack
from deadwood_tf.gradient_attacks import Attack, logits_fn


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
    dtype = tf.float32 if tf.as_dtype(a.dtype).is_floating else tf.as_dtype(a.dtype)
    return tf.TensorSpec([None, *a.shape[1:]], dtype)


def _check_attacks(model, x, attacks) -> None:
    """Raises a ValueError for anything in `attacks` that cannot attack `model` on `x`."""
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
        if isinstance(a, EmbeddingAttack):  # it perturbs this model's layer
            a.check_inputs(model)


def _counter(attack, model_fn, signature):
    """`correct(xb, yb)`: how many of a batch `model_fn` classifies right under `attack`
    (None: on clean inputs)."""
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
    checks.check_keras_model(model)
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
    _check_attacks(model, x, attacks)
    fn = logits_fn(model, from_logits)
    model_fn = lambda t: fn(t, training=False)  # noqa: E731
    signature = [tf.nest.map_structure(_input_spec, x), tf.TensorSpec([None], tf.int64)]

    results = {}
    names = ["clean"] + [a.name for a in attacks]
    progbar = keras.utils.Progbar(len(names) * math.ceil(n / batch_size)) if verbose else None
    for name, attack in zip(names, [None, *attacks]):
        correct = _counter(attack, model_fn, signature)
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
