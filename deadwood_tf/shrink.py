"""`shrink_model`: rebuild a channel-pruned model physically smaller.

Masks only zero weights: the model still runs at full width. `shrink_model`
finds the channel groups that are cut (all their kernel slices are zero),
rebuilds the same functional graph with fewer filters/units, copies the kept
slices of every weight, and checks the result against the masked model. The
result is a plain Keras model: it saves as `.keras` (loads with
`safe_mode=True`, no custom objects) and exports with `export_tflite` as a
dense float or int8 file, which is faster on every runtime and CPU.

Example:

    dw.prune_model(model) ...; dw.cut_channels(pruned, 0.5)
    small = shrink_model(pruned)                     # verified to 1e-5
    dw.export_tflite(small, "small.tflite", sparse=False, quantize="int8")
"""

from __future__ import annotations

import keras
import numpy as np

from deadwood_tf import channel_groups as cg
from deadwood_tf import channel_impl


def _plain(model) -> keras.Model:
    from deadwood_tf import prune

    if prune.pruned_weights(model):
        return prune.strip_pruning(model)
    student = getattr(model, "student", None)
    if isinstance(student, keras.Model) and hasattr(model, "teacher"):
        return student
    return model


def _kept(ids: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return np.flatnonzero((ids < 0) | keep[np.maximum(ids, 0)])


def sample_inputs_for(model, n: int = 8, seed: int = 0) -> np.ndarray:
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ValueError("Invalid value for argument `sample_inputs`: the model's input "
                         f"shape {shape} is not static; pass sample inputs.")
    return np.random.default_rng(seed).uniform(0, 1, (n, *shape)).astype("float32")


def shrink_model(model, sample_inputs=None, round_to: int = 1, atol: float = 1e-5,
                 groups: cg.ChannelGroups | None = None) -> keras.Model:
    """A plain, smaller Keras model without the cut channels of `model`.

    Args:
      model: a channel-pruned model (from `prune_model` + `cut_channels`, a
        DeadwoodModel, or a plain model with zeroed channels).
      sample_inputs: inputs to verify on (one input only); default 8 uniform
        random inputs in [0, 1].
      round_to: keep a multiple of this many output channels (or all of
        them) in every convolution/dense layer (e.g. 4 or 8, which CPU kernels
        like) by keeping some cut channels as zero channels. 1: no rounding.
      atol: the largest tolerated absolute difference between the outputs of
        `model` and of the result on `sample_inputs`.

    Returns:
      A new functional Keras model of the same layer names and types with
      fewer filters/units. `model` is not modified.

    Raises:
      ValueError: the graph cannot be analysed (see `channel_groups`), bad
        `round_to`, or the result differs from `model` by more than `atol`.
    """
    plain = _plain(model)
    groups = groups or cg.channel_groups(plain)
    keep = ~cg.zero_groups(plain, groups, read="weights")
    producers = [l.out_groups for l in groups.layers if l.kind == "kernel"]
    keep = channel_impl.round_kept(keep, producers, round_to)
    maps = {l.name: l for l in groups.layers}
    layers = {l.name: l for l in plain.layers}

    def clone_function(layer):
        config = layer.get_config()
        lc = maps.get(layer.name)
        if lc is not None and lc.kind == "kernel":
            n = len(_kept(lc.out_groups, keep))
            config["filters" if "filters" in config else "units"] = n
        return layer.__class__.from_config(config)

    shrunk = keras.models.clone_model(plain, clone_function=clone_function)
    for new in shrunk.layers:
        lc = maps.get(new.name)
        old = layers[new.name]
        if lc is None:
            if old.get_weights():
                new.set_weights(old.get_weights())
            continue
        new.set_weights(_sliced_weights(old, lc, keep))
    _verify(plain, shrunk, sample_inputs, atol)
    return shrunk


def _sliced_weights(layer, lc: cg.LayerChannels, keep) -> list:
    kin, kout = _kept(lc.in_groups, keep), _kept(lc.out_groups, keep)
    out = []
    for var in layer.weights:
        v = np.asarray(keras.ops.convert_to_numpy(var))
        name = var.path.split("/")[-1]
        if lc.kind == "kernel" and name == "kernel":
            v = v.take(kin, axis=-2).take(kout, axis=-1)
        elif lc.kind == "depthwise" and name == "kernel":
            v = v.take(kin, axis=-2)
        elif lc.kind == "norm" or name == "bias":
            v = v.take(kout, axis=0)
        out.append(v)
    return out


def _verify(plain, shrunk, sample_inputs, atol):
    x = sample_inputs_for(plain) if sample_inputs is None else np.asarray(sample_inputs)
    ref = keras.ops.convert_to_numpy(plain(x, training=False))
    got = keras.ops.convert_to_numpy(shrunk(x, training=False))
    diff = float(np.max(np.abs(np.asarray(ref) - np.asarray(got)))) if np.size(ref) else 0.0
    if not diff <= atol:
        raise ValueError(
            f"shrink_model: the shrunk model differs from the masked model by {diff:.3g} "
            f"(> atol={atol}) on the sample inputs; nothing is returned.")
