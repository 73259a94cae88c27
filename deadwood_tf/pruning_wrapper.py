"""The layer that owns the masks.

`PruningWrapper` holds a prunable layer and one non-trainable mask per
prunable weight (see `prune_registry`). Its forward pass runs the inner layer
with every prunable weight `W` replaced by `W * M`, so masked weights
contribute nothing and get exactly zero gradient; a variable constraint then
re-zeroes them after every optimizer step, so neither gradients nor optimizer
slots (momentum, Adam moments, weight decay) can revive a pruned weight.
"""

from __future__ import annotations

import keras
from keras import ops

from deadwood_tf import prune_registry


@keras.saving.register_keras_serializable(package="deadwood_tf")
class MaskConstraint(keras.constraints.Constraint):
    """Multiplies a weight by its mask (after any constraint the layer had).

    Set on the variable, not in the layer config, so it is never serialized:
    the wrapper re-creates it whenever it is built.
    """

    def __init__(self, mask, inner=None):
        self.mask = mask
        self.inner = inner

    def __call__(self, w):
        if self.inner is not None:
            w = self.inner(w)
        return w * ops.cast(self.mask, w.dtype)

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package="deadwood_tf")
class PruningWrapper(keras.layers.Wrapper):
    """Wraps a prunable layer with binary masks on its prunable weights.

    Args:
      layer: a layer whose type is in `prune_registry` (Dense, Conv*, ...).
        The wrapper takes the layer's name, so `model.get_layer(name)` still
        finds it.

    Attributes:
      masks: dict from weight path (e.g. "kernel") to the mask variable
        (same shape and dtype as the weight, values 0 or 1, not trainable).
    """

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                "Invalid value for argument `layer`: expected a Keras 3 layer. "
                f"Received: layer={layer!r}"
            )
        paths = prune_registry.prunable_weight_paths(layer)
        if not paths:
            raise ValueError(
                f"Invalid value for argument `layer`: {type(layer).__name__} "
                f"'{layer.name}' has no prunable weights; see "
                "deadwood_tf.prune_registry.register_prunable."
            )
        kwargs.setdefault("name", layer.name)
        super().__init__(layer, **kwargs)
        self.weight_paths = paths
        self.masks = {}
        self.supports_masking = getattr(layer, "supports_masking", False)
        if layer.built:
            self._create_masks()
            self.built = True

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        if not self.masks:
            self._create_masks()
        self.built = True

    def _create_masks(self):
        for path in self.weight_paths:
            weight = prune_registry.resolve_weight(self.layer, path)
            mask = self.add_weight(
                name=path.lstrip("_").replace(".", "_") + "_mask",
                shape=weight.shape,
                dtype=weight.dtype,
                initializer="ones",
                trainable=False,
            )
            weight.constraint = MaskConstraint(mask, weight.constraint)
            self.masks[path] = mask

    def pruned_weights(self):
        """List of `(path, weight_variable, mask_variable)` for this layer."""
        return [
            (p, prune_registry.resolve_weight(self.layer, p), self.masks[p])
            for p in self.weight_paths
        ]

    def call(self, *args, **kwargs):
        # Map every inner variable to its current value (which also honours an
        # enclosing StatelessScope) and the prunable ones to `W * M`.
        masked = {id(w): (w, m) for _, w, m in self.pruned_weights()}
        mapping = []
        for v in self.layer.variables:
            if id(v) in masked:
                mapping.append((v, v.value * ops.cast(masked[id(v)][1].value, v.dtype)))
            else:
                mapping.append((v, v.value))
        with keras.StatelessScope(state_mapping=mapping):
            return self.layer(*args, **kwargs)

    def compute_output_spec(self, *args, **kwargs):
        return self.layer.compute_output_spec(*args, **kwargs)

    def compute_output_shape(self, *args, **kwargs):
        return self.layer.compute_output_shape(*args, **kwargs)

    def compute_mask(self, *args, **kwargs):
        return self.layer.compute_mask(*args, **kwargs)
