"""The terms of Deadwooding's Lagrangian (METHOD.md), as pure functions.

    L = rho * Omega(w)
        + mean_i [ lam_i * max(0, c_i - alpha) + mu_i * max(0, r_i - beta) ]
        + gamma * CE(y, S(x))

Each function takes tensors (or NumPy arrays) and returns tensors; none reads
or writes a variable, so tests call them directly with hand-computed values
and `DeadwoodModel.train_step` only wires them together. Per-example results
have shape `[batch]`.

>>> import numpy as np
>>> float(hinge_violations(np.float32([0.5, 2.0]), 1.0)[1])
1.0
>>> float(normalized_l1([(np.float32([[1.0, -2.0]]), np.float32([[1.0, 0.0]]))], 2))
0.5
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def distillation_gap(teacher_logits, student_logits, temperature):
    """`tau^2 * KL(softmax(t / tau) || softmax(s / tau))` per row: the fidelity
    term `c_i` (and `r_i` for `robust_target="teacher"`). Logits `[batch, classes]`."""
    t = tf.convert_to_tensor(teacher_logits) / temperature
    s = tf.convert_to_tensor(student_logits) / temperature
    kl = tf.reduce_sum(tf.nn.softmax(t) * (tf.nn.log_softmax(t) - tf.nn.log_softmax(s)), axis=-1)
    return temperature**2 * kl


def hinge_violations(values, bound):
    """`max(0, values - bound)`: how far each example's term exceeds its bound."""
    return tf.nn.relu(tf.convert_to_tensor(values) - bound)


def weighted_violations(fidelity_multipliers, robustness_multipliers, index,
                        fidelity_violations, robustness_violations):
    """`lam[index_i] * v_i + mu[index_i] * u_i` per example.

    `fidelity_multipliers`, `robustness_multipliers`: `[num_examples]`;
    `index`: int `[batch]` in `[0, num_examples)` (the caller keeps it there).
    """
    lam = tf.gather(fidelity_multipliers, index)
    mu = tf.gather(robustness_multipliers, index)
    return lam * fidelity_violations + mu * robustness_violations


def normalized_l1(weights_and_masks, num_prunable):
    """`Omega(w) = sum_l |W_l * M_l|_1 / P` over `(weight, mask)` pairs, in float32."""
    total = tf.add_n([
        tf.cast(tf.reduce_sum(tf.abs(w * tf.cast(m, w.dtype))), tf.float32)
        for w, m in ((tf.convert_to_tensor(w), tf.convert_to_tensor(m))
                     for w, m in weights_and_masks)])
    return total / num_prunable


def batch_mean(per_example, sample_weight=None, count=None):
    """Mean of `per_example` over the batch: weighted by `sample_weight` if
    given, else a plain sum divided by `count` (default: the batch size;
    under tf.distribute, the size of the global batch). 0 for an empty batch."""
    per_example = tf.convert_to_tensor(per_example)
    if sample_weight is not None:
        sw = tf.reshape(tf.cast(sample_weight, per_example.dtype), [-1])
        total = tf.reduce_sum(sw) if count is None else count
        return tf.reduce_sum(sw * per_example) / tf.maximum(total, 1e-12)
    if count is None:
        count = tf.shape(per_example)[0]
    return tf.math.divide_no_nan(tf.reduce_sum(per_example), tf.cast(count, per_example.dtype))


def mean_violations(violation_sums, counts):
    """Per-example mean violation since the last reset: `sums / max(counts, 1)`
    (0 where an example was not seen). All `[num_examples]`."""
    return tf.convert_to_tensor(violation_sums) / tf.maximum(tf.convert_to_tensor(counts), 1.0)


def dual_update(multipliers, mean_violations, step_size, max_multiplier):
    """The dual step of one constraint: `clip(m + step_size * v, 0, max_multiplier)`.

    `multipliers`, `mean_violations`: `[num_examples]` (`lam` and `v`, or `mu`
    and `u`); returns the new multipliers, for the caller to assign.

    >>> import numpy as np
    >>> [float(m) for m in dual_update(np.float32([1.0, 9.0]), np.float32([0.5, 2.0]), 2.0, 10.0)]
    [2.0, 10.0]
    """
    return tf.clip_by_value(tf.convert_to_tensor(multipliers) + step_size * mean_violations,
                            0.0, max_multiplier)


def group_lasso(slices, group_sizes):
    """`Omega_g(w) = sum_g sqrt(n_g) * ||(W * M)_g||_2 / P`, in float32.

    Each group's L2 norm over all its masked kernel slices, weighted by the
    square root of its size `n_g` (so that with one weight per group it is the
    L1 term `sum |w| / P`), divided by `P = sum_g n_g` (1 if there is none).

    Args:
      slices: `(w, axes, ids)` triples: `w` a masked kernel `W * M`, `axes`
        the axes summed over (all but the channel axis), `ids` the group of
        each channel along the remaining axis, `len(group_sizes)` for a
        channel in no group.
      group_sizes: `n_g` per group (numbers of kernel weights).

    A group whose weights are all 0 (cut) adds 0 and gets no gradient (the
    square root's slope at 0 is infinite).

    >>> import numpy as np
    >>> w = np.float32([[3.0, 0.0], [4.0, 1.0]])   # norms 5 and 1, sizes 2: (5 + 1) * sqrt(2) / 4
    >>> round(float(group_lasso([(w, (0,), np.int32([0, 1]))], [2, 2])), 4)
    2.1213
    """
    sizes = np.asarray(group_sizes, np.float32)
    num = len(sizes)
    weights = np.sqrt(np.concatenate([sizes, np.zeros([1], np.float32)]))
    total = float(sum(int(n) for n in group_sizes)) or 1.0
    energy = 0.0
    for w, axes, ids in slices:
        per_position = keras.ops.sum(keras.ops.square(keras.ops.cast(w, "float32")), axes)
        energy = energy + keras.ops.segment_sum(per_position, ids, num_segments=num + 1)
    safe = keras.ops.where(energy > 0, energy, 1.0)
    norms = keras.ops.where(energy > 0, keras.ops.sqrt(safe), 0.0)
    return keras.ops.sum(norms * weights) / total
