"""Which weights of which layer type may be pruned, and where they are in a model.

The registry is data: a table from Keras layer class to the attribute paths of
its prunable weights (METHOD.md, "Prunable weights"). Biases and normalisation
parameters never appear here. Users add their own layer types with
`register_prunable`. `prunable_variables(model)` walks every tracked sub-layer
of any model (subclassed, KerasHub, custom layers holding Dense or
MultiHeadAttention layers) and lists what the table names.

Example:

>>> import keras
>>> from deadwood_tf import prune_registry
>>> prune_registry.prunable_weight_paths(keras.layers.Dense(4))
('kernel',)
"""

from __future__ import annotations

import keras

from deadwood_tf import compat

_REGISTRY: dict[type, tuple[str, ...]] = {
    keras.layers.Dense: ("kernel",),
    keras.layers.EinsumDense: ("kernel",),
    keras.layers.Conv1D: ("kernel",),
    keras.layers.Conv2D: ("kernel",),
    keras.layers.Conv3D: ("kernel",),
    keras.layers.Conv1DTranspose: ("kernel",),
    keras.layers.Conv2DTranspose: ("kernel",),
    keras.layers.Conv3DTranspose: ("kernel",),
    keras.layers.DepthwiseConv1D: ("kernel",),
    keras.layers.DepthwiseConv2D: ("kernel",),
    keras.layers.SeparableConv1D: ("depthwise_kernel", "pointwise_kernel"),
    keras.layers.SeparableConv2D: ("depthwise_kernel", "pointwise_kernel"),
    keras.layers.Embedding: ("embeddings",),
    keras.layers.MultiHeadAttention: (
        "_query_dense.kernel",
        "_key_dense.kernel",
        "_value_dense.kernel",
        "_output_dense.kernel",
    ),
}

# Layers of optional packages, by qualified class name, so that the registry
# needs no import of them. KerasHub's transformer blocks are built from Dense,
# EinsumDense and MultiHeadAttention (found by walking their sub-layers);
# these are its own weight tables.
_REGISTRY_BY_NAME: dict[str, tuple[str, ...]] = {
    "keras_hub.src.layers.modeling.position_embedding.PositionEmbedding": (
        "position_embeddings",),
}


def register_prunable(layer_class: type, weight_paths: tuple[str, ...] | list[str]) -> None:
    """Declares which weights of `layer_class` (and its subclasses) are prunable.

    `weight_paths` are attribute paths from the layer to a Keras variable,
    dots for sub-layers (e.g. `"_query_dense.kernel"`).
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise TypeError(
            "Invalid value for argument `layer_class`: expected a subclass of "
            f"keras.layers.Layer. Received: layer_class={layer_class!r}"
        )
    paths = tuple(weight_paths)
    if not paths or not all(isinstance(p, str) and p for p in paths):
        raise ValueError(
            "Invalid value for argument `weight_paths`: expected a non-empty "
            f"list of attribute paths. Received: weight_paths={weight_paths!r}"
        )
    _REGISTRY[layer_class] = paths


def prunable_weight_paths(layer: keras.layers.Layer) -> tuple[str, ...]:
    """The prunable weight paths of `layer`, or `()` if its type is not prunable.

    The most specific registered class in the layer's MRO wins, so a subclass of
    `Dense` is pruned like `Dense` unless registered itself.
    """
    for cls in type(layer).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
        paths = _REGISTRY_BY_NAME.get(f"{cls.__module__}.{cls.__qualname__}")
        if paths:
            return paths
    return ()


def sublayers(layer: keras.layers.Layer):
    """Every layer tracked under `layer` (not itself), depth first, each once.

    Keras 3.15 has no public walk below `Model.layers`; `Layer._layers` (the
    tracked sub-layers, in creation order) is what `Layer._flatten_layers`
    walks too. Unlike `_flatten_layers`, this keeps creation order inside
    each layer.
    """
    seen = set()

    def walk(parent):
        for child in compat.tracked_sublayers(parent):
            if id(child) in seen:
                continue
            seen.add(id(child))
            yield child
            yield from walk(child)

    return list(walk(layer))


def prunable_variables(model: keras.layers.Layer) -> list:
    """`(layer, path, variable)` for every prunable variable under `model`.

    Deterministic order (depth first, in creation order; a layer's own paths
    before its sub-layers); a variable reached twice (a shared layer, the
    projections of MultiHeadAttention also reached as EinsumDense layers) is
    listed once, under the first layer that reaches it. Unbuilt layers are
    skipped.
    """
    out, seen = [], set()
    for layer in sublayers(model):
        if not layer.built:
            continue
        for path in prunable_weight_paths(layer):
            variable = resolve_weight(layer, path)
            if id(variable) not in seen:
                seen.add(id(variable))
                out.append((layer, path, variable))
    return out


def is_prunable(layer: keras.layers.Layer) -> bool:
    return bool(prunable_weight_paths(layer))


def resolve_weight(layer: keras.layers.Layer, path: str) -> keras.Variable:
    """The Keras variable at attribute `path` of a built `layer`."""
    obj = layer
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ValueError(
                f"Layer '{layer.name}' ({type(layer).__name__}) has no weight at "
                f"'{path}'. Is the layer built?"
            )
    if not isinstance(obj, keras.Variable):
        # LoRA-enabled and quantized layers expose a computed tensor instead.
        raise ValueError(
            f"Layer '{layer.name}' ({type(layer).__name__}): '{path}' is not a "
            f"plain variable (got {type(obj).__name__}); LoRA-enabled or "
            "quantized layers cannot be pruned."
        )
    return obj
