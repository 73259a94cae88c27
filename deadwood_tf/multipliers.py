"""The per-example state of the dual method: multipliers and violation buffers.

`DeadwoodModel` holds five `[num_examples]` float32 variables: the multipliers
`lam` (fidelity) and `mu` (robustness), and the violations `v`, `u` summed
since the epoch began with a count per example. The steps add to the buffers
(`record_violations`); at each epoch end the callback's dual step turns their
means into new multipliers (`lagrangian.mean_violations`,
`lagrangian.dual_update`).

Under tf.distribute the multipliers are mirrored and only written in
cross-replica context (the dual step). The violation buffers are
replica-local (ON_READ); every replica applies the same all-gathered scatter,
so each local copy holds the whole buffer and a cross-replica read takes
replica 0's copy without any communication. Without a strategy both are
plain variables.
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

from deadwood_tf import replicas

MULTIPLIERS = ("fidelity_multipliers", "robustness_multipliers")
BUFFERS = ("fidelity_violations", "robustness_violations", "violation_counts")
_MIRRORED = dict(aggregation="only_first_replica", synchronization="on_write")
_LOCAL = dict(aggregation="only_first_replica", synchronization="on_read")


def make_variables(owner, num_examples: int, initial_multiplier: float, strategy=None) -> dict:
    """The five variables, by name (`MULTIPLIERS` then `BUFFERS`), named under
    `owner`'s scope and created under `strategy` (None: no strategy).

    Not `add_weight`: Keras 3's has no `synchronization` argument. Assigning
    them to attributes of `owner`, in this order, tracks them as add_weight
    would (saved files and BackupAndRestore depend on the order).
    """
    def var(name, value, distribution):
        with keras.name_scope(owner.name, caller=owner):
            return keras.Variable(
                initializer=keras.initializers.Constant(value), shape=(num_examples,),
                dtype="float32", trainable=False, name=name, **distribution)

    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        made = {name: var(name, initial_multiplier, _MIRRORED) for name in MULTIPLIERS}
        made.update({name: var(name, 0.0, _LOCAL) for name in BUFFERS})
    return made


def record_violations(buffers, index, valid, fidelity_violation, robustness_violation,
                      replica_ctx) -> None:
    """Adds each example's violations (and a count) to `buffers`, the
    `(fidelity_violations, robustness_violations, violation_counts)` variables.

    `index`: int64 `[batch]`; `valid`: bool `[batch]`, False for an example left
    out (it adds nothing). Under a strategy with several replicas each replica
    sees other examples: the (index, violations) pairs are all-gathered (16
    bytes per example of the global batch) and every replica applies the same
    scatter to its own copy of the buffers.
    """
    # Out-of-range examples travel with index -1 and add nothing.
    index = tf.where(valid, index, -tf.ones_like(index))
    values = tf.stop_gradient(tf.stack([fidelity_violation, robustness_violation], 1))
    if replicas.num_replicas(replica_ctx) > 1:
        index, values = replica_ctx.all_gather((index, values), axis=0)
    counted = tf.cast(index >= 0, tf.float32)
    index = tf.maximum(index, 0)[:, None]
    for buffer, column in zip(buffers, (values[:, 0] * counted, values[:, 1] * counted,
                                        counted)):
        buffer.assign(tf.tensor_scatter_nd_add(buffer.value, index, column))
