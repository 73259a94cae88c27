"""The alternatives Deadwood is measured against, each from the same dense model.

Every function takes the trained dense model (a Keras 3 model, left unchanged),
the data, a sparsity and an epoch budget, and returns a plain (stripped) Keras 3
model of the same architecture:

- `tfmot_magnitude`: tfmot's `prune_low_magnitude` with `PolynomialDecay`,
  per layer, on a tf_keras copy of the architecture (what most TF users do),
  with natural or adversarial fine-tuning; the weights come back into Keras 3.
(The global magnitude controls, one-shot and gradual, are switches of the
Deadwood mechanism: see `runner.METHODS`.)
- `hydra`: a global variant of HYDRA (Sehwag et al., 2020), not the
  published method: importance scores learnt under adversarial training with
  the weights frozen (straight-through top-k over the whole network, scores
  initialised to |w|, Adam), a cut by score, then adversarial fine-tuning;
  on this project's masks. (Published: per-layer top-k, scaled-initialised
  scores, SGD, its own budget split.)
- `l1_filter_at`: L1-norm filter pruning (Li et al., 2017): whole channel
  groups ranked by their filters' L1 norms, one-shot cut to a fraction of the
  FLOPs, then adversarial training; the structured baseline.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from deadwood_tf import attacks as attacks_lib
from deadwood_tf import models as models_lib
from deadwood_tf import prune, pruning_impl
from deadwood_tf.adversarial import AdversarialTraining


def _steps_per_epoch(ds, batch_size):
    return math.ceil(ds.num_train / batch_size)


# ---------------------------------------------------------------- tfmot


def tfmot_magnitude(dense, ds, sparsity, *, model_name, width=0, depth=0, epochs=6,
                    pruning_epochs=4, frequency=10, batch_size=128, learning_rate=1e-3,
                    attack=None, seed=0, verbose=2):
    """tfmot per-layer magnitude pruning (PolynomialDecay over `pruning_epochs`),
    fine-tuned naturally (`attack=None`) or adversarially, on a tf_keras copy."""
    import tensorflow_model_optimization as tfmot
    import tf_keras

    copy = models_lib.build_model(model_name, ds.input_shape, ds.num_classes, width, depth,
                                  km=tf_keras)
    copy.set_weights(dense.get_weights())
    steps = _steps_per_epoch(ds, batch_size)
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0,
        end_step=max(1, pruning_epochs * steps), frequency=max(1, min(frequency, steps)))
    pruned = tfmot.sparsity.keras.prune_low_magnitude(copy, pruning_schedule=schedule)
    ce = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    data = ds.train_pipeline(batch_size, seed, with_index=False)
    if attack is None:
        trainer = pruned
        trainer.compile(tf_keras.optimizers.Adam(learning_rate), ce, metrics=["accuracy"])
    else:
        trainer = _tfkeras_adversarial_class()(pruned, attack)
        trainer.compile(tf_keras.optimizers.Adam(learning_rate))
    trainer.fit(data, epochs=epochs, verbose=verbose,
                callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    out = models_lib.build_model(model_name, ds.input_shape, ds.num_classes, width, depth)
    out.set_weights(stripped.get_weights())
    return out


def _tfkeras_adversarial_class():
    import tf_keras

    class TfKerasAdversarial(tf_keras.Model):
        """Adversarial training of a tf_keras model (cleverhans attack, logits)."""

        def __init__(self, inner, attack):
            super().__init__()
            self.inner = inner
            self.attack = attack

        def call(self, x, training=None):
            return self.inner(x, training=training)

        def train_step(self, data):
            x, y = data
            y = tf.reshape(tf.cast(y, tf.int64), [-1])
            x_adv = self.attack(lambda t: self.inner(t, training=False), x, y)
            with tf.GradientTape() as tape:
                logits = self.inner(x_adv, training=True)
                loss = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
            variables = self.inner.trainable_variables
            self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return {"loss": loss}

    return TfKerasAdversarial


# ---------------------------------------------------------------- L1-norm filter pruning + AT


def _adversarial_finetune(wrapped, ds, attack, epochs, batch_size, learning_rate, seed,
                          verbose):
    """`epochs` of adversarial training of a cut model (masks fixed); stripped."""
    if epochs:
        trainer = AdversarialTraining(wrapped, attack)
        trainer.compile(keras.optimizers.Adam(learning_rate))
        trainer.fit(ds.train_pipeline(batch_size, seed, with_index=False), epochs=epochs,
                    verbose=verbose)
    return prune.strip_pruning(wrapped)


def l1_filter_at(dense, ds, flops_fraction, *, attack, epochs=6, batch_size=128,
                 learning_rate=1e-3, seed=0, verbose=2):
    """L1-norm filter pruning (Li et al., 2017) with adversarial fine-tuning.

    The channel groups of `dense` (`channel_groups`) are ranked by the L1 norm
    of their producers' filters and cut, one shot and globally, until
    `flops_fraction` of the MACs is removed; then `epochs` of adversarial
    training. Li et al. prune layer by layer with a sensitivity analysis; the
    global ranking here gives the same budget as structured Deadwood's cut.
    Returns the stripped model (cut channels are zero: `shrink_model` removes
    them)."""
    from deadwood_tf import channel_groups as cg

    wrapped = prune.prune_model(dense)
    groups = cg.channel_groups(wrapped)
    cg.cut_channels(wrapped, flops_fraction, normalize="none", groups=groups,
                    energies=cg.filter_l1_norms(wrapped, groups))
    return _adversarial_finetune(wrapped, ds, attack, epochs, batch_size, learning_rate, seed,
                                 verbose)


# ---------------------------------------------------------------- HYDRA


class _HydraScores(keras.Model):
    """Learns one importance score per prunable weight under adversarial training.

    The forward pass uses `W * m` with `m` the hard global top-k mask of the
    scores (a `StatelessScope` mapping each weight to its masked value); gradients
    reach the scores straight through it (HYDRA's GetSubnet). Weights are frozen.
    """

    def __init__(self, wrapped, attack, sparsity):
        super().__init__()
        self.wrapped = wrapped
        self.attack = attack
        self.entries = prune.pruned_weights(wrapped)
        total = sum(int(np.prod(w.shape)) for w, _ in self.entries)
        self.keep = max(1, total - pruning_impl.num_to_prune(sparsity, total))
        self.scores = [self.add_weight(shape=w.shape, initializer="zeros", name=f"score_{i}")
                       for i, (w, _) in enumerate(self.entries)]
        for s, (w, _) in zip(self.scores, self.entries):
            s.assign(tf.abs(w.value))  # start from the magnitude ranking
        self._logits = attacks_lib.logits_fn(wrapped)
        self.built = True

    @property
    def trainable_weights(self):
        return list(self.scores)

    @property
    def trainable_variables(self):
        return self.trainable_weights

    def hard_masks(self):
        flat = tf.concat([tf.reshape(tf.abs(s.value), [-1]) for s in self.scores], 0)
        threshold = tf.math.top_k(flat, k=self.keep, sorted=True).values[-1]
        return [tf.cast(tf.abs(s.value) >= threshold, s.dtype) for s in self.scores]

    def call(self, x, training=None):
        return self.wrapped(x, training=training)

    def _masked_by(self, masks):
        """A scope in which the model computes with `W * mask` for each entry."""
        return keras.StatelessScope(state_mapping=[
            (w, w.value * m) for (w, _), m in zip(self.entries, masks)])

    def train_step(self, data):
        x, y = data[0], tf.reshape(tf.cast(data[1], tf.int64), [-1])
        hard = self.hard_masks()

        def masked_logits(t):
            with self._masked_by(hard):
                return self._logits(t, training=False)

        x_adv = self.attack(masked_logits, x, y)
        with tf.GradientTape() as tape:
            straight = [tf.stop_gradient(h - s.value) + s.value
                        for h, s in zip(hard, self.scores)]
            with self._masked_by(straight):
                logits = self._logits(x_adv, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        self.optimizer.apply_gradients(zip(tape.gradient(loss, self.scores), self.scores))
        return {"loss": loss}


def hydra(dense, ds, sparsity, *, attack, score_epochs=3, epochs=6, batch_size=128,
          learning_rate=1e-3, score_learning_rate=1e-3, seed=0, verbose=2):
    """HYDRA within a budget of `epochs`: `score_epochs` learning scores, the rest
    fine-tuning the weights adversarially under the learnt mask."""
    wrapped = prune.prune_model(dense)
    data = ds.train_pipeline(batch_size, seed, with_index=False)
    scorer = _HydraScores(wrapped, attack, sparsity)
    if score_epochs:
        scorer.compile(keras.optimizers.Adam(score_learning_rate))
        scorer.fit(data, epochs=score_epochs, verbose=verbose)
    # The cut by learnt score: exact size, deterministic ties.
    keep = pruning_impl.keep_masks([np.abs(s.numpy()) for s in scorer.scores], sparsity)
    for (w, m), k in zip(scorer.entries, keep):
        m.assign(k.astype(m.dtype))
        w.assign(np.asarray(w.numpy()) * k.astype(w.dtype))
    if epochs - score_epochs > 0:
        trainer = AdversarialTraining(wrapped, attack)
        trainer.compile(keras.optimizers.Adam(learning_rate))
        trainer.fit(data, epochs=epochs - score_epochs, verbose=verbose)
    return prune.strip_pruning(wrapped)
