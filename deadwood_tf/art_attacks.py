"""Attacks run by the adversarial-robustness-toolbox (ART): Square, AutoAttack, APGD.

They take and return NumPy batches and run eagerly (not inside
`tf.function`), so they serve evaluation only: `evaluate_robustness` accepts
them, a training step does not (`in_graph = False`). ART is an optional
extra: `pip install "deadwood_tf[robustness]"`.

>>> APGD(0.3, loss="dlr", steps=20).name
'apgd_dlr20_linf_0.3'
>>> SquareAttack(0.3, max_queries=500).in_graph
False
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from deadwood_tf.gradient_attacks import Attack


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
