"""The alternatives Deadwood is measured against, each from the same dense model.

Every function takes the trained dense model (a Keras 3 model, left unchanged),
the data, a sparsity and an epoch budget, and returns a plain (stripped) Keras 3
model of the same architecture:

- `tfmot_magnitude`: tfmot's `prune_low_magnitude` with `PolynomialDecay`,
  per layer, on a tf_keras copy of the architecture (what most TF users do),
  with natural or adversarial fine-tuning; the weights come back into Keras 3.
(The global magnitude controls, one-shot and gradual, are switches of the
Deadwood mechanism: see `runner.METHODS`.)
- `hydra`: HYDRA (Sehwag et al., 2020): importance scores learnt under
  adversarial training with the weights frozen (straight-through top-k of
  |scores|), a cut by score, then adversarial fine-tuning; on this project's
  masks. Its switches give the published method (per-layer top-k, scaled
  score initialisation, SGD with momentum and L2, cosine rates) and a global
  variant (top-k over the whole network, scores initialised to |w|, Adam).
- `pquant`: PQuantML's MDMM and PDP pruning (its layers, masks and phases)
  under adversarial training; the weights come back into the dense
  architecture.
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
from deadwood_tf import pipeline, prune, pruning_impl


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
                          verbose, callbacks=()):
    """`epochs` of adversarial training of a cut model (masks fixed); stripped."""
    if epochs:
        pipeline.fit_adversarial(wrapped, attack, keras.optimizers.Adam(learning_rate),
                                 ds.train_pipeline(batch_size, seed, with_index=False), epochs,
                                 verbose=verbose, callbacks=list(callbacks))
    return prune.strip_pruning(wrapped)


def l1_filter_at(dense, ds, flops_fraction, *, attack, epochs=6, batch_size=128,
                 learning_rate=1e-3, seed=0, verbose=2, round_to=1, callbacks=()):
    """L1-norm filter pruning (Li et al., 2017) with adversarial fine-tuning.

    The channel groups of `dense` (`channel_groups`) are ranked by the L1 norm
    of their producers' filters and cut, one shot and globally, until
    `flops_fraction` of the MACs is removed; then `epochs` of adversarial
    training. Li et al. prune layer by layer with a sensitivity analysis; the
    global ranking here gives the same budget as structured Deadwood's cut.
    Returns the stripped model (cut channels are zero: `shrink_model` removes
    them). `round_to`: every layer keeps a multiple of it (`cut_channels`).
    `callbacks`: Keras callbacks of the fine-tuning fit."""
    from deadwood_tf import channel_groups as cg

    wrapped = prune.prune_model(dense)
    groups = cg.channel_groups(wrapped)
    prune.cut_channels(wrapped, flops_fraction, normalize="none", groups=groups,
                    energies=cg.filter_l1_norms(wrapped, groups, per_layer=True),
                    round_to=round_to)
    return _adversarial_finetune(wrapped, ds, attack, epochs, batch_size, learning_rate, seed,
                                 verbose, callbacks)


# ---------------------------------------------------------------- HYDRA

HYDRA_SCOPES = ("global", "layer")
HYDRA_SCORE_INITS = ("magnitude", "scaled")
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "cosine")


class _SGDWithL2(keras.optimizers.SGD):
    """SGD whose `l2` is added to the gradient (`g + l2 * w`), as torch.optim.SGD's
    `weight_decay` (HYDRA's optimizer); Keras' own `weight_decay` is decoupled."""

    def __init__(self, l2=0.0, **kwargs):
        kwargs.setdefault("name", "sgd_with_l2")  # a class name with "_" is no TF root scope
        super().__init__(**kwargs)
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        if self.l2:
            gradient = gradient + self.l2 * keras.ops.cast(variable, gradient.dtype)
        super().update_step(gradient, variable, learning_rate)


def _optimizer(name, learning_rate, steps, *, momentum=0.0, weight_decay=0.0,
               lr_schedule="constant"):
    """Adam (no decay) or SGD with momentum and L2, at a constant learning rate
    or one that decays along a cosine to 0 over `steps` optimizer steps."""
    if lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, max(1, steps))
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    return _SGDWithL2(l2=weight_decay, learning_rate=learning_rate, momentum=momentum)


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"Invalid value for `{name}`: expected one of {choices}. "
                         f"Received: {name}={value!r}")


def scaled_scores(weight) -> np.ndarray:
    """HYDRA's scaled initialisation (`initialize_scaled_score`):
    `sqrt(6 / fan_in) * w / max|w|`, with `fan_in` = `pruning_impl.matrix_view`'s
    (for Conv and Dense kernels, torch's fan-in)."""
    w = np.asarray(weight, dtype=np.float64)
    fan_in, _ = pruning_impl.matrix_view(w.shape)
    peak = np.abs(w).max()
    return (math.sqrt(6.0 / fan_in) * w / (peak if peak > 0 else 1.0)).astype("float32")


class _HydraScores(keras.Model):
    """Learns one importance score per prunable weight under adversarial training.

    The forward pass uses `W * m` with `m` the hard top-k mask of `|scores|`
    (a `StatelessScope` mapping each weight to its masked value): over the
    whole network (`scope="global"`) or within each layer (`"layer"`, HYDRA's
    `GetSubnet`: `k` = layer size minus `round(sparsity * size)`). Gradients
    reach `|scores|` straight through the mask. Weights and biases are frozen.
    """

    def __init__(self, wrapped, attack, sparsity, scope="global", score_init="magnitude"):
        super().__init__()
        self.wrapped = wrapped
        self.attack = attack
        self.scope = scope
        self.entries = prune.pruned_weights(wrapped)
        sizes = [int(np.prod(w.shape)) for w, _ in self.entries]
        groups = [sizes] if scope == "global" else [[n] for n in sizes]
        # Per group (the network, or one layer): its sizes and how many weights stay.
        self.groups = [(g, max(1, sum(g) - pruning_impl.num_to_prune(sparsity, sum(g))))
                       for g in groups]
        self.scores = [self.add_weight(shape=w.shape, initializer="zeros", name=f"score_{i}")
                       for i, (w, _) in enumerate(self.entries)]
        for s, (w, _) in zip(self.scores, self.entries):
            s.assign(np.abs(w.numpy()) if score_init == "magnitude" else scaled_scores(w.numpy()))
        self._logits = attacks_lib.logits_fn(wrapped)
        self.built = True

    @property
    def trainable_weights(self):
        return list(self.scores)

    @property
    def trainable_variables(self):
        return self.trainable_weights

    def hard_masks(self):
        """The top-k masks of `|scores|`: exactly `k` ones per group."""
        flat = [tf.reshape(tf.abs(s.value), [-1]) for s in self.scores]
        out, i = [], 0
        for sizes, keep in self.groups:
            group = tf.concat(flat[i:i + len(sizes)], 0)
            top = tf.math.top_k(group, k=keep, sorted=False).indices
            ones = tf.scatter_nd(top[:, None], tf.ones([keep], group.dtype), [sum(sizes)])
            out.extend(tf.split(ones, sizes))
            i += len(sizes)
        return [tf.reshape(m, s.shape) for m, s in zip(out, self.scores)]

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
            straight = [tf.stop_gradient(h - tf.abs(s.value)) + tf.abs(s.value)
                        for h, s in zip(hard, self.scores)]
            with self._masked_by(straight):
                logits = self._logits(x_adv, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        self.optimizer.apply_gradients(zip(tape.gradient(loss, self.scores), self.scores))
        return {"loss": loss}


def hydra(dense, ds, sparsity, *, attack, score_epochs=3, epochs=6, batch_size=128,
          learning_rate=1e-3, score_learning_rate=1e-3, scope="global",
          score_init="magnitude", optimizer="adam", momentum=0.0, weight_decay=0.0,
          lr_schedule="constant", seed=0, verbose=2):
    """HYDRA within a budget of `epochs`: `score_epochs` learning scores with the
    weights frozen, the rest fine-tuning the weights adversarially under the mask
    of the learnt scores.

    The defaults are the global variant (top-k over the network, scores
    initialised to |w|, Adam). HYDRA as published (Sehwag et al., 2020):
    `scope="layer"`, `score_init="scaled"` (`scaled_scores`),
    `optimizer="sgd"` with `momentum=0.9`, `weight_decay=1e-4` (L2 on the
    gradient), `lr_schedule="cosine"`, `score_learning_rate=0.1`,
    `learning_rate=0.01`. The optimizer settings apply to both phases;
    `lr_schedule="cosine"` decays each phase's rate to 0 along a cosine over
    its steps.

    Raises:
      ValueError: an unknown `scope`, `score_init`, `optimizer` or
        `lr_schedule`, or `score_epochs` outside [0, epochs].
    """
    _check_choice("scope", scope, HYDRA_SCOPES)
    _check_choice("score_init", score_init, HYDRA_SCORE_INITS)
    _check_choice("optimizer", optimizer, OPTIMIZERS)
    _check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
    if not 0 <= score_epochs <= epochs:
        raise ValueError(f"Invalid value for `score_epochs`: expected an int in [0, epochs="
                         f"{epochs}]. Received: score_epochs={score_epochs}")
    steps = _steps_per_epoch(ds, batch_size)
    opt = dict(momentum=momentum, weight_decay=weight_decay, lr_schedule=lr_schedule)
    wrapped = prune.prune_model(dense)
    data = ds.train_pipeline(batch_size, seed, with_index=False)
    scorer = _HydraScores(wrapped, attack, sparsity, scope=scope, score_init=score_init)
    if score_epochs:
        scorer.compile(_optimizer(optimizer, score_learning_rate, score_epochs * steps, **opt))
        scorer.fit(data, epochs=score_epochs, verbose=verbose)
    # The cut by learnt score: exact size, deterministic ties.
    keep = pruning_impl.keep_masks([np.abs(s.numpy()) for s in scorer.scores], sparsity,
                                   scope=scope)
    for (w, m), k in zip(scorer.entries, keep):
        m.assign(k.astype(m.dtype))
        w.assign(np.asarray(w.numpy()) * k.astype(w.dtype))
    if epochs - score_epochs > 0:
        pipeline.fit_adversarial(
            wrapped, attack, _optimizer(optimizer, learning_rate, (epochs - score_epochs) * steps,
                                        **opt), data, epochs - score_epochs, verbose=verbose)
    return prune.strip_pruning(wrapped)


# ---------------------------------------------------------------- PQuantML

# PQuantML's pruning methods that take a target sparsity, and the name of it.
PQUANT_TARGETS = {"mdmm": "target_sparsity", "pdp": "sparsity"}
# Layers PQuantML replaces whose weights `pquant` does not map back.
_PQUANT_LAYERS_NOT_CARRIED = (keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D,
                              keras.layers.Conv1D)


def _pquant_callback_class():
    from pquant.core.keras.train import PQuantCallback

    class InnerModelCallback(PQuantCallback):
        """PQuantML's phases (pruning, then fine-tuning with its masks fixed) on the
        model inside `AdversarialTraining`; its logs keep to numbers (its
        `stage` string breaks Keras' log averaging)."""

        def set_model(self, model):
            super().set_model(model.model)

        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, None)

    return InnerModelCallback


def _check_chain(model):
    """PQuantML's `add_compression_layers` rebuilds a model from its input layer by
    calling each layer on the previous one's output: anything else comes out wrong."""
    layers = model.layers
    if not layers or not isinstance(layers[0], keras.layers.InputLayer):
        raise ValueError(
            "Invalid value for `dense`: PQuantML (add_compression_layers) rebuilds a model "
            "from its InputLayer, the first of `model.layers` (a functional model). "
            f"Received: {model.name!r}, whose first layer is "
            f"{type(layers[0]).__name__ if layers else None}.")
    for prev, layer in zip(layers, layers[1:]):
        if layer.input is not prev.output:
            raise ValueError(
                "Invalid value for `dense`: PQuantML (add_compression_layers) rebuilds only "
                "models whose layers form one chain (each layer called on the previous "
                f"layer's output). Received: {model.name!r}, whose layer {layer.name!r} does not "
                f"take {prev.name!r}'s output.")
        if type(layer) in _PQUANT_LAYERS_NOT_CARRIED:
            raise ValueError(
                f"Invalid value for `dense`: its layer {layer.name!r} is a "
                f"{type(layer).__name__}; only Conv2D and Dense kernels are carried back from "
                f"PQuantML's layers. Received: {model.name!r}")


def pquant(dense, ds, sparsity, *, method, attack, pruning_epochs, epochs=6, batch_size=128,
           learning_rate=1e-3, sparsity_tolerance=0.002, seed=0, verbose=2, **parameters):
    """PQuantML's pruning `method` ("mdmm" or "pdp") under adversarial training.

    PQuantML (`pquant-ml==0.1.0`, the `peers` extra) swaps each Conv2D and
    Dense of a copy of `dense` for its layer whose pruning layer masks the
    kernel; its callback runs `pruning_epochs` of its pruning phase, then
    `epochs - pruning_epochs` of fine-tuning with its masks fixed (no
    pre-training: `dense` is trained). Every epoch is adversarial training
    with `attack` (Adam at `learning_rate`, the data of the other rows).
    Quantization is off. `parameters` are the method's `pruning_parameters`
    (PQuantML's names; defaults: its config_<method>.yaml); the target is
    `sparsity`.

    Returns:
      A plain Keras model like `dense` whose kernels are PQuantML's pruned
      (`apply_final_compression`) kernels: exact zeros where its masks are 0.

    Raises:
      ImportError: without pquant-ml.
      ValueError: an unknown `method` or parameter, `pruning_epochs` outside
        [1, epochs], or a model PQuantML cannot rebuild (not one chain of layers).
      RuntimeError: the model's sparsity is more than `sparsity_tolerance`
        from `sparsity` (MDMM's constraint only pulls toward its target): a
        row at another sparsity would not compare.
    """
    try:
        import pquant
        from pquant.core.keras import layers as pq_layers
    except ImportError as e:
        raise ImportError("The PQuantML rows need pquant-ml==0.1.0: "
                          "`pip install -e .[peers]`.") from e

    _check_choice("method", method, tuple(PQUANT_TARGETS))
    if not 1 <= pruning_epochs <= epochs:
        raise ValueError(f"Invalid value for `pruning_epochs`: expected an int in [1, epochs="
                         f"{epochs}]. Received: pruning_epochs={pruning_epochs}")
    _check_chain(dense)
    config = getattr(pquant, f"{method}_config")()
    known = type(config.pruning_parameters).model_fields
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ValueError(f"Invalid value for `pquant.{method}`: unknown PQuantML pruning "
                         f"parameters {unknown}; expected names from {sorted(known)}. "
                         f"Received: {sorted(parameters)}")
    for key, value in {**parameters, PQUANT_TARGETS[method]: float(sparsity)}.items():
        setattr(config.pruning_parameters, key, value)
    config.quantization_parameters.enable_quantization = False
    config.training_parameters.pretraining_epochs = 0
    copy = keras.models.clone_model(dense)
    copy.set_weights(dense.get_weights())
    compressed = pq_layers.add_compression_layers(copy, config, (1, *ds.input_shape))
    callback = _pquant_callback_class()(
        config, log_ebops=False, log_keep_ratio=False, apply_final_compression=True,
        pretraining_epochs=0, epochs=pruning_epochs, fine_tuning_epochs=epochs - pruning_epochs)
    pipeline.fit_adversarial(compressed, attack, keras.optimizers.Adam(learning_rate),
                             ds.train_pipeline(batch_size, seed, with_index=False),
                             callback.total_epochs, verbose=verbose, callbacks=[callback])
    # Back into the dense architecture: PQuantML keeps the order of the weight layers.
    out = keras.models.clone_model(dense)
    out.set_weights(dense.get_weights())
    pq = [layer for layer in compressed.layers if isinstance(layer, pq_layers.PQWeightBiasBase)]
    plain = [layer for layer in out.layers
             if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
    for source, target in zip(pq, plain, strict=True):
        target.kernel.assign(source.kernel)
        if target.use_bias:
            target.bias.assign(source.bias)
    report = prune.sparsity_report(out)
    if abs(report.sparsity - sparsity) > sparsity_tolerance:
        layers = ", ".join(f"{w.name} {w.sparsity:.4f}" for w in report.weights)
        raise RuntimeError(
            f"PQuantML {method} ended at sparsity {report.sparsity:.4f} ({layers}), not the "
            f"target {sparsity:g} (tolerance {sparsity_tolerance:g}), after {pruning_epochs} "
            f"pruning and {epochs - pruning_epochs} fine-tuning epochs: a row at another "
            f"sparsity would not compare. Its settings (`pquant.{method}`) do not reach the "
            "target in this budget; tune them on the validation split.")
    return out
