"""Plain adversarial training (Madry et al.) of any classifier, as a `keras.Model`.

Used for the dense teacher's adversarial phase and by the benchmark's
baselines; Deadwood itself trains with `DeadwoodModel`.

    at = AdversarialTraining(model, attack=PGD(0.2, steps=5, step_size=0.05))
    at.compile(keras.optimizers.Adam(1e-3))
    at.fit(x, y, epochs=6)      # updates `model`'s weights in place
"""

from __future__ import annotations

import keras
import tensorflow as tf

from deadwood_tf import attacks as attacks_lib
from deadwood_tf import compat
from deadwood_tf import prune


class AdversarialTraining(keras.Model):
    """Trains `model` on adversarial examples (cross-entropy on `attack(x)`).

    Args:
      model: a Keras 3 classifier (logits or softmax output); trained in place.
      attack: a `deadwood_tf.attacks.Attack`.
      clean_weight: weight of the clean-input cross-entropy added to the loss
        (0: pure adversarial training).

    Compile it with an optimizer only. Training logs `loss` and
    `adv_accuracy` (on the adversarial inputs); `evaluate` (and validation)
    logs the clean `loss` and `accuracy` of `model`.
    """

    def __init__(self, model, attack, clean_weight: float = 0.0, **kwargs):
        prune.check_keras_model(model)
        if not isinstance(attack, attacks_lib.Attack):
            raise ValueError(
                "Invalid value for argument `attack`: expected a deadwood_tf.attacks.Attack. "
                f"Received: attack={attack!r}")
        super().__init__(**kwargs)
        self.model = model
        self.attack = attack
        self.clean_weight = float(clean_weight)
        self._logits = attacks_lib.logits_fn(model)
        self._outputs_logits = not attacks_lib.outputs_probabilities(model)
        self.adv_accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="adv_accuracy")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.built = True

    def call(self, inputs, training=None):
        return self.model(inputs, training=training)

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        y = tf.reshape(tf.cast(y, tf.int64), [-1])
        x_adv = self.attack(lambda t: self._logits(t, training=False), x, y)
        with tf.GradientTape() as tape:
            adv_logits = tf.cast(self._logits(x_adv, training=True), tf.float32)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, adv_logits))
            if self.clean_weight:
                clean = tf.cast(self._logits(x, training=True), tf.float32)
                loss += self.clean_weight * tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(y, clean))
            if self.model.losses:
                loss += tf.add_n(self.model.losses)
            scaled = self.optimizer.scale_loss(loss)
        variables = self.model.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        tracker = compat.loss_tracker(self)
        tracker.update_state(loss)
        self.adv_accuracy_tracker.update_state(y, adv_logits)
        # No extra clean pass for metrics: validation data reports clean accuracy.
        return {"loss": tracker.result(),
                "adv_accuracy": self.adv_accuracy_tracker.result()}

    def test_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        y = tf.reshape(tf.cast(y, tf.int64), [-1])
        logits = tf.cast(self._logits(x, training=False), tf.float32)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        tracker = compat.loss_tracker(self)
        tracker.update_state(loss)
        self.accuracy_tracker.update_state(y, logits)
        return {"loss": tracker.result(), "accuracy": self.accuracy_tracker.result()}
