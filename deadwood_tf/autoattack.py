"""AutoAttack's attacks in TensorFlow, batched and compiled: APGD-CE, APGD-T, Square.

L-inf versions of the attacks of AutoAttack (Croce and Hein, ICML 2020; the
reference code is `autoattack/autopgd_base.py` and `autoattack/square.py`),
for a classifier given as `model_fn(x) -> logits`:

- `apgd`: Auto-PGD on cross-entropy (APGD-CE) or on the DLR loss. Initial step
  2 * eps, momentum 0.75, the step halved at the checkpoints (after 22% of the
  iterations, then intervals shrinking by 3% down to 6%) where fewer than
  `rho` of the steps since the last checkpoint raised the loss, or where
  neither the step nor the best loss changed since it; a halving restarts from
  the best point.
- `apgd_targeted`: APGD on the targeted DLR loss
  `-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)` (APGD-T), one target after
  another (the top `n_targets` other classes by clean logit), each on the
  examples no earlier target broke.
- `square`: the Square attack (Andriushchenko et al., ECCV 2020): gradient-free
  random search on the margin loss from vertical stripes, one random square of
  side sqrt(p * h * w) per example and query, p from `p_init` on AutoAttack's
  piecewise schedule; every example of the batch moves in one compiled loop,
  and examples leave the batch once misclassified.
- `worst_case`: a cascade of attacks, each run only on the examples every
  earlier one left correctly classified.

Each attack returns the adversarial inputs (`x_adv`, a NumPy array): for an
example the attack broke, a point it misclassifies; otherwise the point of
highest loss found. Inputs are floats; images for `square` are
`[batch, height, width]` or `[batch, height, width, channels]`. Randomness is
stateless, drawn from `seed`, so a call is reproducible.

Example:

    x_adv = apgd(lambda t: model(t, training=False), x_test, y_test, eps=0.2)
    robust = model.predict(x_adv).argmax(-1) == y_test
"""

from __future__ import annotations

import collections
import math
import time
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

LOSSES = ("ce", "dlr")


# ---------------------------------------------------------------- checks


def _check_number(value, name, high=math.inf):
    """`value` as a float in (0, `high`]; ValueError naming `name` otherwise."""
    try:
        ok = not isinstance(value, bool) and math.isfinite(float(value)) \
            and 0 < float(value) <= high
    except (TypeError, ValueError):
        ok = False
    if not ok:
        expected = "a finite number > 0" if high == math.inf else f"a number in (0, {high:g}]"
        raise ValueError(f"Invalid value for argument `{name}`: expected {expected}. "
                         f"Received: {name}={value!r}")
    return float(value)


def _check_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"Invalid value for argument `{name}`: expected an int >= {minimum}. "
                         f"Received: {name}={value!r}")
    return int(value)


def _check_data(x, y, clip_min, clip_max, min_rank=2):
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError("Invalid value for argument `y`: expected a 1-D array of integer labels. "
                         f"Received: shape {y.shape}, dtype {y.dtype}")
    if x.ndim < min_rank or len(x) != len(y):
        raise ValueError(f"Invalid value for argument `x`: expected an array of rank >= {min_rank} "
                         f"with one row per label ({len(y)}). Received: shape {x.shape}")
    if not float(clip_min) < float(clip_max):
        raise ValueError("Invalid values for arguments `clip_min`, `clip_max`: expected "
                         f"clip_min < clip_max. Received: clip_min={clip_min}, clip_max={clip_max}")
    return x, y.astype(np.int32)


# ---------------------------------------------------------------- losses


def margin(logits, y):
    """`z_y - max_{j != y} z_j` per example: > 0 exactly where `y` is predicted."""
    z_y = tf.gather(logits, y, axis=1, batch_dims=1)
    others = tf.where(tf.one_hot(y, tf.shape(logits)[1]) > 0, logits.dtype.min, logits)
    return z_y - tf.reduce_max(others, axis=1)


def dlr_loss(logits, y, y_target=None):
    """The DLR loss per example (higher: closer to misclassified).

    Untargeted (`y_target=None`): `-(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3)`;
    targeted: `-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`, `z_pik` the k-th
    largest logit. Needs 3 classes (4 when targeted).
    """
    top = tf.math.top_k(logits, k=3 if y_target is None else 4).values
    if y_target is None:
        return -margin(logits, y) / (top[:, 0] - top[:, 2] + 1e-12)
    z_y = tf.gather(logits, y, axis=1, batch_dims=1)
    z_t = tf.gather(logits, y_target, axis=1, batch_dims=1)
    return -(z_y - z_t) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def _loss(name, logits, y, y_target):
    if name == "ce":
        return tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)
    return dlr_loss(logits, y, None if name == "dlr" else y_target)


# ---------------------------------------------------------------- compiled loops

_CACHE_SIZE = 8
_compiled_cache: collections.OrderedDict = collections.OrderedDict()


def _compiled(key, build):
    """The compiled function for `key` (a model_fn and static settings): traced
    once per model and shape, not once per call (tracing a model costs seconds)."""
    if key in _compiled_cache:
        _compiled_cache.move_to_end(key)
        return _compiled_cache[key]
    fn = _compiled_cache[key] = build()
    while len(_compiled_cache) > _CACHE_SIZE:
        _compiled_cache.popitem(last=False)
    return fn


def _batch_max(t):
    return tf.reduce_max(t, axis=tf.range(1, tf.rank(t)), keepdims=True)


def _expand(v, like):
    """A per-example vector `v` shaped to broadcast against `like`."""
    return tf.reshape(v, tf.concat([tf.shape(v), tf.ones([tf.rank(like) - 1], tf.int32)], 0))


def _apgd_loop(model_fn, loss_name, n_iter, rho, momentum):
    """The compiled APGD run (AutoAttack's `attack_single_run`, L-inf)."""
    first = max(int(0.22 * n_iter), 1)       # p_1 = 0.22
    shrink = max(int(0.03 * n_iter), 1)      # intervals shrink by 0.03 ...
    shortest = max(int(0.06 * n_iter), 1)    # ... down to 0.06

    def loss_and_grad(x, y, y_target):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = model_fn(x)
            loss = _loss(loss_name, logits, y, y_target)
            total = tf.reduce_sum(loss)
        return loss, tape.gradient(total, x), logits

    @tf.function(reduce_retracing=True)
    def run(x, y, y_target, eps, clip_min, clip_max, seed):
        def project(z):
            return tf.clip_by_value(tf.clip_by_value(z, x - eps, x + eps), clip_min, clip_max)

        noise = tf.random.stateless_uniform(tf.shape(x), seed, -1.0, 1.0)
        x_adv = tf.clip_by_value(x + eps * noise / _batch_max(tf.abs(noise)), clip_min, clip_max)
        loss, grad, logits = loss_and_grad(x_adv, y, y_target)
        robust = tf.argmax(logits, 1, output_type=tf.int32) == y
        x_fooled = x_adv
        x_best, loss_best, grad_best = x_adv, loss, grad
        step = tf.ones_like(_expand(loss, x)) * 2.0 * eps
        x_old = x_adv
        loss_prev = loss
        increases = tf.zeros_like(loss)
        loss_best_at_check = loss_best
        halved_at_check = tf.ones_like(robust)  # no "unchanged" halving at the first checkpoint
        since_check = tf.constant(0)
        interval = tf.constant(first)
        for i in tf.range(n_iter):
            if not tf.reduce_any(robust):
                break
            a = tf.where(i > 0, momentum, 1.0)
            x_prev_step = x_adv - x_old
            x_old = x_adv
            z = project(x_adv + step * tf.sign(grad))
            x_adv = project(x_adv + a * (z - x_adv) + (1.0 - a) * x_prev_step)
            loss, grad, logits = loss_and_grad(x_adv, y, y_target)
            correct = tf.argmax(logits, 1, output_type=tf.int32) == y
            x_fooled = tf.where(_expand(robust & ~correct, x), x_adv, x_fooled)
            robust = robust & correct
            increases += tf.cast(loss > loss_prev, increases.dtype)
            loss_prev = loss
            better = loss > loss_best
            x_best = tf.where(_expand(better, x), x_adv, x_best)
            grad_best = tf.where(_expand(better, x), grad, grad_best)
            loss_best = tf.where(better, loss, loss_best)
            since_check += 1
            check = since_check == interval
            halve = check & (
                (increases <= tf.cast(interval, increases.dtype) * rho)
                | (~halved_at_check & (loss_best_at_check >= loss_best)))
            step = tf.where(_expand(halve, x), step / 2.0, step)
            x_adv = tf.where(_expand(halve, x), x_best, x_adv)
            grad = tf.where(_expand(halve, x), grad_best, grad)
            halved_at_check = tf.where(check, halve, halved_at_check)
            loss_best_at_check = tf.where(check, loss_best, loss_best_at_check)
            increases = tf.where(check, tf.zeros_like(increases), increases)
            interval = tf.where(check, tf.maximum(interval - shrink, shortest), interval)
            since_check = tf.where(check, 0, since_check)
        return tf.where(_expand(robust, x), x_best, x_fooled), robust

    return run


def _run_apgd(model_fn, x, y, y_target, eps, loss, n_iter, rho, momentum, clip_min, clip_max,
              seed):
    run = _compiled((model_fn, "apgd", loss, n_iter, rho, momentum),
                    lambda: _apgd_loop(model_fn, loss, n_iter, rho, momentum))
    x_adv, robust = run(tf.constant(x), tf.constant(y), tf.constant(y_target),
                        tf.constant(eps, tf.float32), tf.constant(clip_min, tf.float32),
                        tf.constant(clip_max, tf.float32), tf.constant(seed, tf.int32))
    return x_adv.numpy(), robust.numpy()


def _check_apgd(eps, n_iter, rho, momentum):
    return (_check_number(eps, "eps"), _check_int(n_iter, "n_iter"),
            _check_number(rho, "rho", 1.0), _check_number(momentum, "momentum", 1.0))


def _num_classes(model_fn, x, needed, attack):
    logits = np.asarray(model_fn(tf.constant(x[:1])))
    if logits.ndim != 2 or logits.shape[1] < needed:
        raise ValueError(f"Invalid value for argument `model_fn`: {attack} needs logits of shape "
                         f"[batch, classes] with at least {needed} classes. Received: logits of "
                         f"shape {logits.shape}")
    return logits.shape[1]


# ---------------------------------------------------------------- public attacks


def apgd(model_fn: Callable, x, y, eps: float, *, loss: str = "ce", n_iter: int = 100,
         n_restarts: int = 1, rho: float = 0.75, momentum: float = 0.75, clip_min: float = 0.0,
         clip_max: float = 1.0, seed: int = 0) -> np.ndarray:
    """Untargeted L-inf APGD (AutoAttack's APGD-CE with `loss="ce"`).

    Args:
      model_fn: `model_fn(x) -> logits` ([batch, classes]), traceable by
        `tf.function` (a Keras model called with `training=False`).
      x, y: float inputs `[batch, ...]` and integer labels `[batch]`.
      eps: L-inf radius, > 0, in the units of `x`.
      loss: "ce" (cross-entropy) or "dlr" (the untargeted DLR loss; 3+ classes).
      n_iter: iterations per restart, >= 1 (AutoAttack: 100).
      n_restarts: random restarts, each on the examples no earlier one broke.
      rho: a checkpoint halves the step where at most this fraction of the
        steps since the last one raised the loss; in (0, 1].
      momentum: weight of the new step against the last one, in (0, 1].
      clip_min, clip_max: the valid input range.
      seed: the random start's seed (restart `r` draws from `(seed, r)`).

    Returns:
      `x_adv` (float32, the shape of `x`): within `eps` of `x` and inside
      `[clip_min, clip_max]`; misclassified where the attack succeeded.

    Raises:
      ValueError: for an argument out of range or inputs and labels that do not match.
    """
    eps, n_iter, rho, momentum = _check_apgd(eps, n_iter, rho, momentum)
    n_restarts = _check_int(n_restarts, "n_restarts")
    if loss not in LOSSES:
        raise ValueError(f"Invalid value for argument `loss`: expected one of {LOSSES}. "
                         f"Received: loss={loss!r}")
    x, y = _check_data(x, y, clip_min, clip_max)
    x_adv = x.copy()
    if not len(x):
        return x_adv
    _num_classes(model_fn, x, 3 if loss == "dlr" else 2, f"APGD ({loss})")
    todo = np.arange(len(x))
    for r in range(n_restarts):
        out, robust = _run_apgd(model_fn, x[todo], y[todo], y[todo], eps, loss, n_iter, rho,
                                momentum, clip_min, clip_max, [int(seed), r])
        x_adv[todo] = out
        todo = todo[robust]
        if not len(todo):
            break
    return x_adv


def apgd_targeted(model_fn: Callable, x, y, eps: float, *, n_targets: int = 9,
                  n_iter: int = 100, rho: float = 0.75, momentum: float = 0.75,
                  clip_min: float = 0.0, clip_max: float = 1.0, seed: int = 0) -> np.ndarray:
    """L-inf APGD on the targeted DLR loss (AutoAttack's APGD-T).

    Target `k` (k = 1 .. `n_targets`) is the class with the (k+1)-th largest
    clean logit; each target runs `n_iter` iterations on the examples that no
    earlier target broke. Needs at least 4 classes and `n_targets` at most
    classes - 1. Other arguments and the return value as for `apgd`.
    """
    eps, n_iter, rho, momentum = _check_apgd(eps, n_iter, rho, momentum)
    n_targets = _check_int(n_targets, "n_targets")
    x, y = _check_data(x, y, clip_min, clip_max)
    x_adv = x.copy()
    if not len(x):
        return x_adv
    classes = _num_classes(model_fn, x, 4, "APGD-T (targeted DLR)")
    if n_targets > classes - 1:
        raise ValueError(f"Invalid value for argument `n_targets`: expected an int in "
                         f"[1, {classes - 1}] (the model has {classes} classes). "
                         f"Received: n_targets={n_targets}")
    todo = np.arange(len(x))
    for k in range(1, n_targets + 1):
        clean = _predict(model_fn, x[todo], logits=True)
        target = np.argsort(-clean, axis=1, kind="stable")[:, k].astype(np.int32)
        out, robust = _run_apgd(model_fn, x[todo], y[todo], target, eps, "dlr_targeted", n_iter,
                                rho, momentum, clip_min, clip_max, [int(seed), k])
        x_adv[todo] = out
        todo = todo[robust]
        if not len(todo):
            break
    return x_adv


# AutoAttack's schedule of p (square.py `p_selection`, rescaled to 10,000 queries):
# p_init halves after 0.1%, 0.5%, 2%, 5%, 10%, 20%, 40%, 60% and 80% of the queries.
_P_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def _square_loop(model_fn):
    """The compiled Square iterations `[start, stop)` (AutoAttack's square.py, L-inf)."""

    @tf.function(reduce_retracing=True)
    def run(x, y, x_best, margin_best, queries, start, stop, n_queries, eps, p_init, clip_min,
            clip_max, seed):
        shape = tf.shape(x)
        n, h, w, c = shape[0], shape[1], shape[2], shape[3]
        rows = tf.reshape(tf.range(h), [1, -1, 1, 1])
        cols = tf.reshape(tf.range(w), [1, 1, -1, 1])

        def body(i, x_best, margin_best, queries):
            active = margin_best > 0
            it = (i * 10000) // n_queries
            halvings = tf.reduce_sum(tf.cast(it > tf.constant(_P_SCHEDULE), tf.int32))
            p = p_init / tf.pow(2.0, tf.cast(halvings, tf.float32))
            side = tf.cast(tf.round(tf.sqrt(p * tf.cast(h * w, tf.float32))), tf.int32)
            side = tf.clip_by_value(side, 1, tf.minimum(h, w))
            u = tf.random.stateless_uniform([n, 2 + c], tf.stack([seed, i]))
            top = tf.cast(u[:, 0] * tf.cast(h - side + 1, tf.float32), tf.int32)
            left = tf.cast(u[:, 1] * tf.cast(w - side + 1, tf.float32), tf.int32)
            sign = tf.reshape(tf.where(u[:, 2:] < 0.5, -1.0, 1.0), [n, 1, 1, c])
            top, left = tf.reshape(top, [n, 1, 1, 1]), tf.reshape(left, [n, 1, 1, 1])
            window = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)

            def candidate(s):
                return tf.where(window, tf.clip_by_value(x + eps * s, clip_min, clip_max), x_best)

            x_new = candidate(sign)
            # As the original Square code: a window already at the drawn corner
            # would waste the query, so its sign is flipped.
            same = tf.reduce_all(tf.abs(x_new - x_best) < 1e-7, axis=[1, 2, 3])
            x_new = candidate(tf.where(_expand(same, x), -sign, sign))
            m = margin(model_fn(x_new), y)
            better = active & (m < margin_best)
            return (i + 1, tf.ensure_shape(tf.where(_expand(better, x), x_new, x_best), x.shape),
                    tf.where(better, m, margin_best), queries + tf.cast(active, queries.dtype))

        def cond(i, x_best, margin_best, queries):
            return (i < stop) & tf.reduce_any(margin_best > 0)

        i, x_best, margin_best, queries = tf.while_loop(
            cond, body, [start, x_best, margin_best, queries])
        return i, x_best, margin_best, queries

    return run


def square(model_fn: Callable, x, y, eps: float, *, n_queries: int = 5000, p_init: float = 0.8,
           clip_min: float = 0.0, clip_max: float = 1.0, seed: int = 0,
           compact_every: int = 100, return_queries: bool = False):
    """The L-inf Square attack (margin loss), all examples in one compiled loop.

    Starts from vertical stripes (`x + eps * s`, a random sign `s` per column and
    channel), then per query and example sets one random square window of the
    perturbation to `+-eps` (a random sign per channel) and keeps the change where
    the margin `z_y - max_{j != y} z_j` falls. An example stops being attacked
    once its margin is <= 0 (misclassified); every `compact_every` iterations the
    batch is shrunk to the examples still robust.

    Args:
      model_fn: `model_fn(x) -> logits`, traceable by `tf.function`.
      x, y: images `[batch, height, width]` or `[batch, height, width,
        channels]` (channels last) and integer labels `[batch]`.
      eps: L-inf radius, > 0.
      n_queries: iterations after the initial stripes, >= 1 (AutoAttack's
        `n_queries`, ART's `max_iter`); an example costs at most
        `n_queries + 1` model evaluations.
      p_init: the initial fraction of pixels in the window, in (0, 1].
      clip_min, clip_max: the valid input range.
      seed: the seed of every random draw (the stripes and each iteration's windows).
      compact_every: iterations between two shrinkings of the batch.
      return_queries: also return the model evaluations each example cost.

    Returns:
      `x_adv` (float32, the shape of `x`), or `(x_adv, queries)` with
      `return_queries` (`queries` an int array `[batch]`).

    Raises:
      ValueError: for an argument out of range, or inputs that are not images.
    """
    eps = _check_number(eps, "eps")
    n_queries = _check_int(n_queries, "n_queries")
    p_init = _check_number(p_init, "p_init", 1.0)
    compact_every = _check_int(compact_every, "compact_every")
    x, y = _check_data(x, y, clip_min, clip_max, min_rank=3)
    shape = x.shape
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError("Invalid value for argument `x`: expected images [batch, height, width] "
                         f"or [batch, height, width, channels]. Received: shape {shape}")
    queries = np.zeros(len(x), np.int32)
    if not len(x):
        return (x.reshape(shape), queries) if return_queries else x.reshape(shape)
    fn = model_fn if len(shape) == 4 else (lambda t: model_fn(t[..., 0]))
    _num_classes(fn, x, 2, "Square")
    run = _compiled((model_fn, "square", len(shape)), lambda: _square_loop(fn))
    rng = np.random.default_rng([int(seed), 2**31 - 1])  # the stripes' own stream
    stripes = rng.choice(np.float32([-1, 1]), size=(len(x), 1, x.shape[2], x.shape[3]))
    x_adv = np.clip(x + eps * stripes, clip_min, clip_max).astype(np.float32)
    margins = _predict(fn, x_adv, margins_for=y)
    queries += 1
    consts = [tf.constant(n_queries), tf.constant(eps, tf.float32),
              tf.constant(p_init, tf.float32), tf.constant(clip_min, tf.float32),
              tf.constant(clip_max, tf.float32), tf.constant(int(seed))]
    todo = np.flatnonzero(margins > 0)
    i = 0
    while len(todo) and i < n_queries:
        stop = min(i + compact_every, n_queries)
        i, xb, mb, qb = run(tf.constant(x[todo]), tf.constant(y[todo]), tf.constant(x_adv[todo]),
                            tf.constant(margins[todo]), tf.constant(queries[todo]),
                            tf.constant(i), tf.constant(stop), *consts)
        i = int(i)
        x_adv[todo], margins[todo], queries[todo] = xb.numpy(), mb.numpy(), qb.numpy()
        todo = todo[margins[todo] > 0]
    x_adv = x_adv.reshape(shape)
    return (x_adv, queries) if return_queries else x_adv


# ---------------------------------------------------------------- evaluation


def _predict(model_fn, x, logits=False, margins_for=None, batch_size=1000):
    """Predicted labels (or logits, or margins against `margins_for`), in batches."""
    out = []
    for start in range(0, len(x), batch_size):
        z = model_fn(tf.constant(x[start:start + batch_size]))
        if margins_for is not None:
            z = margin(z, tf.constant(margins_for[start:start + batch_size]))
        elif not logits:
            z = tf.argmax(z, 1, output_type=tf.int32)
        out.append(np.asarray(z))
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def worst_case(model_fn: Callable, x, y, attacks: Sequence, eps: float, *,
               clip_min: float = 0.0, clip_max: float = 1.0, batch_size: int | None = None,
               verbose: bool = False) -> dict:
    """The per-example worst case over `attacks`, run as a cascade.

    Each attack runs only on the examples still classified correctly, clean and
    under every attack before it; an example counts as broken when the model
    misclassifies the point the attack returned (checked here, not taken from
    the attack), and that point must lie within `eps` of the input and inside
    `[clip_min, clip_max]`.

    Args:
      model_fn: `model_fn(x) -> logits`.
      x, y: inputs and integer labels.
      attacks: `(name, attack)` pairs in the order to run, `attack(x, y) -> x_adv`.
      eps: the L-inf radius every attack must respect (checked).
      batch_size: examples per attack call; None: all remaining at once.
      verbose: a line per attack.

    Returns:
      `{"robust": {"clean": mask, name: mask, ...}, "attacked": {name: count},
      "seconds": {name: seconds}}`: each mask (bool `[batch]`) is "correct
      clean and under every attack up to this one".

    Raises:
      ValueError: for bad arguments or duplicate names; RuntimeError if an
      attack returns points outside the eps ball or the input range.
    """
    eps = _check_number(eps, "eps")
    x, y = _check_data(x, y, clip_min, clip_max)
    names = [name for name, _ in attacks]
    if len(set(names)) != len(names) or "clean" in names or not all(
            isinstance(n, str) and callable(a) for n, a in attacks):
        raise ValueError("Invalid value for argument `attacks`: expected (name, callable) pairs "
                         f"with distinct names other than 'clean'. Received: names {names}")
    if batch_size is not None:
        batch_size = _check_int(batch_size, "batch_size")
    robust = _predict(model_fn, x) == y
    out = {"robust": {"clean": robust.copy()}, "attacked": {}, "seconds": {}}
    for name, attack in attacks:
        todo = np.flatnonzero(robust)
        t0 = time.time()
        step = batch_size or max(len(todo), 1)
        for start in range(0, len(todo), step):
            idx = todo[start:start + step]
            x_adv = np.asarray(attack(x[idx], y[idx]), dtype=np.float32).reshape(x[idx].shape)
            gap = float(np.max(np.abs(x_adv - x[idx]))) if len(idx) else 0.0
            if gap > eps * (1 + 1e-5) + 1e-6 or x_adv.min(initial=clip_min) < clip_min - 1e-6 \
                    or x_adv.max(initial=clip_max) > clip_max + 1e-6:
                raise RuntimeError(f"Attack {name!r} returned points outside the eps={eps:g} ball "
                                   f"or the range [{clip_min:g}, {clip_max:g}] (largest change "
                                   f"{gap:g}).")
            robust[idx] = _predict(model_fn, x_adv) == y[idx]
        out["robust"][name] = robust.copy()
        out["attacked"][name] = int(len(todo))
        out["seconds"][name] = time.time() - t0
        if verbose:
            print(f"   {name}: {len(todo)} attacked, {100 * robust.mean():.1f}% still robust "
                  f"({out['seconds'][name]:.0f} s)", flush=True)
    return out
