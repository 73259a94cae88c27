"""What the training step does differently with several replicas (tf.distribute).

Kept apart from the step itself: the number of replicas, the global count of
a batch, and a Keras multi-worker workaround for the step's logs.
"""

from __future__ import annotations

import tensorflow as tf

from deadwood_tf import compat


def num_replicas(replica_ctx) -> int:
    """Replicas in sync in `replica_ctx` (1 without a strategy)."""
    return replica_ctx.num_replicas_in_sync if replica_ctx is not None else 1


def global_count(per_example, sample_weight, replica_ctx):
    """The size of the global batch (summed over replicas): its examples, or the
    sum of `sample_weight` if given."""
    if sample_weight is not None:
        return replica_ctx.all_reduce("sum", tf.reduce_sum(tf.cast(sample_weight, tf.float32)))
    return replica_ctx.all_reduce("sum", tf.shape(per_example)[0])


def for_multi_worker(logs):
    """Step logs as shape-[1] tensors under multi-worker MultiWorkerMirroredStrategy.

    Keras 3 (TF backend, 3.15) reduces them there with
    `strategy.reduce("MEAN", value, axis=0)`, which fails on scalars ("Invalid
    reduction dimension 0 for input with 0 dimensions"); with shape [1] it gives
    the scalar mean over replicas. Anywhere else the logs pass unchanged.
    """
    strategy = tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or \
            not compat.in_multi_worker_mode(strategy):
        return logs
    return {k: tf.reshape(v, [1]) if getattr(v, "shape", None) is not None
            and v.shape.rank == 0 else v for k, v in logs.items()}
