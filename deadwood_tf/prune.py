"""The public verbs: give a model masks, cut it, strip it, report it.

Any built Keras 3 model works (Sequential, functional with ops between
layers, nested, subclassed, KerasHub): the masks are attached to the prunable
variables (`deadwood_tf.masks`), the model's graph is never rebuilt.

Example:

>>> import keras, deadwood_tf as dw
>>> dense = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32),
...                           keras.layers.Dense(10)])
>>> pruned = dw.prune_model(dense)
>>> round(dw.apply_sparsity(pruned, 0.9), 3)   # the sparsity reached
0.9
>>> round(dw.apply_sparsity(pruned, 0.5), 3)   # a lower cut never unmasks
0.9
>>> plain = dw.strip_pruning(pruned)   # no deadwood object inside
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings

import keras
import numpy as np
from absl import logging
from keras import ops

from deadwood_tf import channel_groups as channel_groups_lib
from deadwood_tf import channel_impl, masks, prune_registry, pruning_impl
from deadwood_tf.checks import check_keras_model, unwrap_deadwood


def pruned_weights(model) -> list:
    """Every `(weight, mask)` pair of a pruned model (or a DeadwoodModel), in order.

    The one interface the rest of the library uses to reach the masks: the
    Lagrangian's L1 term, the cuts, the reports and the baselines. The order
    is `prune_registry.prunable_variables`'s; excluded (unmasked) weights are
    not listed.
    """
    model = unwrap_deadwood(model)
    out = []
    for _, _, weight in prune_registry.prunable_variables(model):
        mask = masks.mask_of(weight)
        if mask is not None:
            out.append((weight, mask))
    return out


def _check_built(model, name="model"):
    if not model.built:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a built model (give it a "
            "keras.Input, or call it once on data). Received: model "
            f"'{model.name}', not built yet."
        )


def _copy(model) -> keras.Model:
    """A new model of the same class, config and weights as `model`."""
    try:
        if type(model) is keras.Sequential or type(model).__name__ == "Functional":
            # clone_model copies nested models and unregistered custom layers too.
            try:
                copy = keras.models.clone_model(model, recursive=True)
            except Exception as e:
                copy = keras.models.clone_model(model, recursive=True,
                                                clone_function=_rebuilt_layer)
                logging.info("deadwood_tf: copied '%s' with layers rebuilt from the arguments "
                             "their __init__ takes (%s).", model.name, e)
        else:
            copy = type(model).from_config(model.get_config())
        if not copy.built or len(copy.weights) != len(model.weights):
            build_config = model.get_build_config()
            if build_config:
                copy.build_from_config(build_config)
                # Keras 3.15 builds a subclassed model's sub-layers here but
                # leaves its own flag down (saving then warns "not built").
                copy.built = True
        if [tuple(w.shape) for w in copy.weights] != [tuple(w.shape) for w in model.weights]:
            raise ValueError("the copy's weights differ from the model's "
                             f"({len(copy.weights)} against {len(model.weights)} variables)")
        copy.set_weights(model.get_weights())
    except Exception as e:  # any failure of the class's own config round trip
        raise ValueError(
            f"Invalid value for argument `model`: model '{model.name}' of type "
            f"{type(model).__name__} could not be copied through "
            f"`from_config(get_config())`: {type(e).__name__}: {e}. Pass "
            "`inplace=True` to put the masks on this model itself."
        ) from e
    return copy


def _rebuilt_layer(layer):
    """`layer` rebuilt from its config without the entries its `__init__` does
    not take. Some layers' `get_config` returns derived values their
    `__init__` refuses (KerasHub 0.32's `ViTPatchingAndEmbedding`: `num_patches`,
    `num_positions`); the copy's weights are then checked shape by shape."""
    config = layer.get_config()
    try:
        return type(layer).from_config(config)
    except Exception:
        taken = set(inspect.signature(type(layer).__init__).parameters)
        taken |= set(inspect.signature(keras.layers.Layer.__init__).parameters) | {"name",
                                                                                  "dtype"}
        return type(layer).from_config({k: v for k, v in config.items() if k in taken})


def _excluded_layers(model, exclude) -> set:
    """ids of the layers of `model` that `exclude` names or selects."""
    layers = prune_registry.sublayers(model)
    if exclude is None:
        return set()
    if callable(exclude):
        return {id(l) for l in layers if exclude(l)}
    names = [exclude] if isinstance(exclude, str) else list(exclude)
    known = {l.name for l in layers}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"Invalid value for argument `exclude`: no layer named {unknown} in "
            f"model '{model.name}'. Layer names: {sorted(known)}. Received: exclude={exclude!r}"
        )
    return {id(l) for l in layers if l.name in set(names)}


def prune_model(model: keras.Model, exclude=None, *, inplace: bool = False,
                masks_from_zeros: bool = False) -> keras.Model:
    """A copy of `model` whose prunable weights carry masks (all ones at first).

    Args:
      model: any built Keras 3 model: Sequential, functional (ops between
        layers, nested models, shared layers, several inputs and outputs
        included), subclassed, KerasHub. It is not modified (unless
        `inplace`). Prunable weights are found in every tracked sub-layer by
        `prune_registry`.
      exclude: layer names (a string or a list of strings, those of layers
        inside nested models and custom layers too) or a predicate
        `fn(layer) -> bool`; the prunable weights of matching layers get no
        mask. A layer found inside an excluded one is still pruned unless
        it matches too.
      inplace: put the masks on `model` itself and return it. Needed for a
        model whose class cannot be rebuilt by `from_config(get_config())`.
        A functional or Sequential model is copied even when one of its
        layers' `get_config` returns arguments its `__init__` refuses
        (KerasHub 0.32's ViT): that layer is rebuilt from the config entries
        its `__init__` takes, and the copy's weights must match the model's
        shape by shape; a subclassed model whose config does not round-trip
        gets the error that suggests `inplace=True`.
      masks_from_zeros: start every mask at `W != 0` instead of ones. This is
        how a pruned model saved as `.keras` gets its masks back: the file
        holds the masked weights as zeros (the masks themselves travel only
        inside a saved `DeadwoodModel`). `prune_model(keras.models.load_model(
        path), masks_from_zeros=True)`.

    Returns:
      A model of the same class, config and weights (a copy unless
      `inplace`) whose layers are the model's own: nothing is wrapped.
      `pruned_weights(result)` lists its `(weight, mask)` pairs.

    Raises:
      ValueError: `model` is not a built Keras 3 model, already carries
        masks, has nothing to prune, `exclude` names unknown layers, or the
        copy fails (the message suggests `inplace=True`).

    Example:

        pruned = prune_model(model, exclude=["logits"])  # keep the last layer dense
    """
    check_keras_model(model)
    _check_built(model)
    if not isinstance(inplace, bool) or not isinstance(masks_from_zeros, bool):
        raise ValueError(
            "Invalid value for arguments `inplace`, `masks_from_zeros`: expected bools. "
            f"Received: inplace={inplace!r}, masks_from_zeros={masks_from_zeros!r}")
    if pruned_weights(model):
        raise ValueError(
            "Invalid value for argument `model`: it already carries pruning masks; "
            "call strip_pruning first."
        )
    excluded = _excluded_layers(model, exclude)
    # Excluded layers are found by position in the walk, identical in the copy.
    positions = [i for i, l in enumerate(prune_registry.sublayers(model)) if id(l) in excluded]
    chosen = [e for e in prune_registry.prunable_variables(model) if id(e[0]) not in excluded]
    if not chosen:
        raise ValueError(
            f"Invalid value for argument `model`: model '{model.name}' has no prunable "
            "layer (Dense, Conv*, DepthwiseConv*, SeparableConv*, Embedding, "
            "EinsumDense, MultiHeadAttention) left after `exclude`."
        )
    target = model if inplace else _copy(model)
    target_layers = prune_registry.sublayers(target)
    excluded = {id(target_layers[i]) for i in positions}
    for layer, _, weight in prune_registry.prunable_variables(target):
        if id(layer) not in excluded:
            masks.attach_mask(weight, ops.not_equal(weight, 0) if masks_from_zeros else None)
    masks.refresh_training(target, constraints_changed=True)
    return target


def strip_pruning(model, inplace: bool = False) -> keras.Model:
    """A plain Keras model computing what the pruned `model` computes.

    Args:
      model: a model from `prune_model`, or a `DeadwoodModel` (its student).
      inplace: take the masks off `model` itself (its weights become
        `W * M`, its variables get their own constraints back) and return it;
        for models `prune_model` could only prune in place.

    Returns:
      A model of the same class with weights `W * M` (exact zeros where masks
      are 0) and no deadwood object inside: it saves and loads as `.keras`
      with `safe_mode=True` and no custom objects (beyond those its own
      class needs).
    """
    model = unwrap_deadwood(model)
    pairs = pruned_weights(model)
    if inplace:
        for weight, _ in pairs:
            masks.detach_mask(weight)
        masks.refresh_training(model, constraints_changed=True)
        return model
    masked = {id(w): m for w, m in pairs}
    values = [ops.convert_to_numpy(w.value * ops.cast(masked[id(w)], w.dtype)) if id(w) in masked
              else ops.convert_to_numpy(w.value) for w in model.weights]
    copy = _copy(model)
    copy.set_weights(values)
    return copy


def apply_sparsity(model, sparsity: float, scope: str = "global", min_keep=0,
                   pattern=None, round_to: int | None = None, unit: str | None = None,
                   groups=None) -> float:
    """Cuts a pruned model (or a DeadwoodModel's student) to `sparsity`, in place.

    The lowest-magnitude live weights are masked; a cut never unmasks: weights
    already masked stay masked, whatever `sparsity` is. With `scope="global"`
    exactly `round(sparsity * P)` of the `P` masked-prunable weights are zero
    afterwards when `sparsity` is at least the current mask sparsity; a lower
    `sparsity` leaves the masks as they are (the result is then the current
    sparsity, i.e. `max(current, sparsity)`; per layer for `scope="layer"`).
    See `pruning_impl.keep_masks` for `scope`, `min_keep` and `pattern` (None,
    a block such as `(1, 4)` or "4x4", or "2:4": the same magnitude rule over
    block norms or N:M groups).

    `unit` says what `sparsity` counts: "weights" (the default for every
    pattern but "channel") or, with `pattern="channel"`, "macs" (the fraction
    of the MACs of the convolution and dense layers to remove) or "channels"
    (of the channel groups). `pattern="channel"` cuts whole channel groups
    instead (`cut_channels`, global, groups ranked by their mean squared
    weight); `min_keep` (an int) is then the fewest output channels a layer
    keeps (at least 1), and every layer keeps a multiple of `round_to`
    channels (or all of them; default 8, `cut_channels`); `groups`:
    `channel_groups.channel_groups(model)`, if already computed.
    `shrink.shrink_model` then removes them. `pattern="channel"` without
    `unit` counts MACs, as before, with a DeprecationWarning.

    Returns:
      The global sparsity after the cut; with `pattern="channel"`, the fraction
      of MACs (or channel groups) removed.
    """
    sparsity = pruning_impl.check_sparsity(sparsity, "sparsity")
    channel = pruning_impl.check_pattern(pattern) == ("channel",)
    unit = check_unit(unit, pattern)
    round_to = channel_impl.check_round_to(round_to, pattern)
    if channel:
        reached = _cut_channel_groups(model, sparsity, scope, min_keep, round_to, unit, groups)
        masks.refresh_training(model)
        return reached
    entries = pruned_weights(model)
    if not entries:
        raise ValueError(
            "Invalid value for argument `model`: it carries no pruning masks; "
            "give it masks with deadwood_tf.prune_model first."
        )
    live, scores = [], []
    for weight, mask in entries:
        m = ops.convert_to_numpy(mask.value) > 0
        live.append(m)
        scores.append(np.where(m, np.abs(ops.convert_to_numpy(weight.value).astype(np.float64)), -1.0))
    keep = pruning_impl.keep_masks(scores, sparsity, scope=scope, min_keep=min_keep,
                                   pattern=pattern)
    for (weight, _), k, m in zip(entries, keep, live):
        # `& m`: a lower cut (or `min_keep`, or a pattern) must never revive a weight.
        masks.apply_mask(weight, k & m)
    masks.refresh_training(model)
    return sparsity_report(model).sparsity


WEIGHT_UNITS = ("weights",)


def check_unit(unit, pattern, name: str = "unit") -> str:
    """What a cut's target counts: "weights" for weight patterns; "macs" or
    "channels" for `pattern="channel"` (None there: "macs", with a
    DeprecationWarning). A ValueError names `name` otherwise."""
    channel = pattern == "channel"
    if unit is None:
        if channel:
            warnings.warn(
                "A channel cut's target without `unit` counts MACs; pass unit='macs' "
                "(the implicit unit goes in the next release).", DeprecationWarning,
                stacklevel=3)
            return "macs"
        return "weights"
    allowed = channel_impl.UNITS if channel else WEIGHT_UNITS
    if unit not in allowed:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected one of {allowed} with "
            f"pattern={pattern!r}. Received: {name}={unit!r}")
    return unit


def _cut_channel_groups(model, sparsity, scope, min_keep, round_to, unit, groups) -> float:
    if scope != "global":
        raise ValueError("Invalid value for argument `scope`: pattern='channel' cuts "
                         f"globally. Received: scope={scope!r}")
    if isinstance(min_keep, bool) or not isinstance(min_keep, (int, np.integer)) or min_keep < 0:
        raise ValueError("Invalid value for argument `min_keep`: with pattern='channel', the "
                         "fewest output channels per layer (an int >= 0; 0 means 1). "
                         f"Received: min_keep={min_keep!r}")
    info = cut_channels(model, sparsity, unit=unit, groups=groups,
                        min_channels=max(1, int(min_keep)), round_to=round_to)
    return info["flops_removed"] if unit == "macs" else info["groups_cut"] / info["groups"]


def cut_channels(model, target: float, unit: str = "macs", normalize: str = "layer",
                 groups=None, energies=None, min_channels: int = 1,
                 round_to: int = channel_impl.DEFAULT_ROUND_TO) -> dict:
    """Cuts whole channel groups of a pruned model, in place, lowest scores first.

    Groups already cut stay cut (a channel once cut stays cut); the cut then
    grows until `target` is reached. Every producer keeps at least
    `min_channels` output channels.

    Args:
      model: a model from `prune_model` (or a DeadwoodModel); its masks are
        reached through `pruned_weights`.
      target: in [0, 1): the fraction of the kernel layers' MACs (`unit="macs"`)
        or of the channel groups (`unit="channels"`) to remove.
      unit: "macs" (preferred: it is what the cut saves) or "channels".
        "flops", its old name, still works with a DeprecationWarning.
      normalize: how a group's squared L2 norm is scored: "layer" (default:
        divided by its number of weights, then by the mean of that over the
        live groups of the same producer layers, so each channel is ranked
        against its own layer's), "size" (divided by its number of weights),
        "macs" (by the MACs it costs) or "none". With "size", a ResNet-20 on
        cifar10k had its whole third stage cut to 1 channel at half the MACs
        (13% clean accuracy after fine-tuning; docs/benchmarks.md).
      groups: `channel_groups.channel_groups(model)`, if already computed.
      energies: the ranking: per-group scores to use instead of the squared
        norms (`channel_groups.group_energies`), e.g. the L1 filter norms of a
        baseline (`channel_groups.filter_l1_norms`); `normalize` still applies.
      min_channels: the layer-collapse guard (an int >= 1). A 1-channel layer
        is legal; if its channel is dead on the calibration data, the int8
        export widens its range so that XNNPack takes the file
        (docs/int8_xnnpack.md).
      round_to: every producer keeps a multiple of this many output channels
        (or its full width), never fewer than `round_to`: the cut removes
        whole aligned blocks, lowest mean score first, and may pass `target`
        by one block. The default, 8, makes the shrunk model run nearer the
        speed its MACs promise on SIMD kernels: a ResNet-style model (698k
        parameters) cut to half its MACs ran 2.00x faster on LiteRT (fp32, 1
        thread) with 8, 1.49x with 1 (both exact against the masked model).
        1 cuts single channels.

    Returns:
      dict with `groups_cut`, `groups`, `macs`, `dense_macs`, `flops_removed`
      (the fraction of MACs removed).

    Example:

    >>> import keras, deadwood_tf as dw
    >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(32, 3),
    ...                           keras.layers.Conv2D(4, 3)])
    >>> pruned = dw.prune_model(model)
    >>> info = dw.cut_channels(pruned, 0.5)   # half the MACs, in blocks of 8 channels
    >>> info["groups_cut"], round(info["flops_removed"], 2)
    (16, 0.5)
    """
    target = channel_impl.check_fraction(target, "target")
    if unit == "flops":
        warnings.warn("cut_channels(unit='flops') is now unit='macs' (what it counted); "
                      "'flops' goes in the next release.", DeprecationWarning, stacklevel=2)
        unit = "macs"
    channel_impl.check_choice(unit, "unit", channel_impl.UNITS)
    channel_impl.check_choice(normalize, "normalize", channel_impl.NORMALIZE)
    groups = groups or channel_groups_lib.channel_groups(model)
    if not groups.groups:
        raise ValueError("Invalid value for argument `model`: it has no prunable channel "
                         "group (only the input and output channels, which are kept).")
    if isinstance(min_channels, bool) or not isinstance(min_channels, (int, np.integer)) \
            or min_channels < 1:
        raise ValueError("Invalid value for argument `min_channels`: expected an int >= 1. "
                         f"Received: min_channels={min_channels!r}")
    already = channel_groups_lib.zero_groups(model, groups)
    scores = _channel_scores(model, groups, energies, normalize, already)
    cut = channel_impl.groups_to_cut(scores, already, target, groups.tables, unit,
                                     min_channels=int(min_channels), multiple=round_to)
    _cut_groups(model, groups, cut)
    dense = groups.total_macs
    macs = groups.macs(~cut)
    return {"groups_cut": int(cut.sum()), "groups": len(groups.groups), "macs": macs,
            "dense_macs": dense, "flops_removed": 1.0 - macs / dense if dense else 0.0}


def _channel_scores(model, groups, energies, normalize, already):
    """Per group: the score `cut_channels` ranks by (lowest goes first);
    `already`: the groups cut before (left out of a layer's mean)."""
    if energies is None:
        energies = channel_groups_lib.group_energies(model, groups)
    scores = channel_impl.group_scores(
        energies, np.array([g.size for g in groups.groups]),
        np.array([g.macs for g in groups.groups]), normalize)
    if normalize == "layer":
        scores = channel_impl.relative_to_family(scores, channel_groups_lib.families(groups),
                                                 ~already)
    return scores


def _cut_groups(model, groups, cut: np.ndarray):
    """Masks and zeroes every slice of the groups with `cut[g]`; zeroes their bias
    and batch-norm gamma/beta (running statistics are kept: with gamma = beta = 0
    a batch norm outputs 0 whatever they are)."""
    layers = channel_groups_lib.layers_by_name(model)
    pending = {}
    for g in groups.groups:
        if not cut[g.index]:
            continue
        for s in g.slices:
            if s.weight in ("moving_mean", "moving_variance"):
                continue
            pending.setdefault((s.layer, s.weight), []).append(s)
    for (lname, wname), slices in pending.items():
        var = getattr(layers[lname], wname)
        value = np.array(keras.ops.convert_to_numpy(var))
        mask = masks.mask_of(var)
        mvalue = None if mask is None else np.array(keras.ops.convert_to_numpy(mask))
        if slices[0].masked and mask is None:
            raise ValueError(
                f"Invalid value for argument `model`: layer '{lname}' has no mask on its "
                f"{wname}; wrap the model with deadwood_tf.prune_model first.")
        for s in slices:
            value[channel_groups_lib.slice_index(s, value.ndim)] = 0
            if mvalue is not None:
                mvalue[channel_groups_lib.slice_index(s, mvalue.ndim)] = 0
        if mask is not None:
            mask.assign(mvalue)
        var.assign(value)


@dataclasses.dataclass(frozen=True)
class WeightSparsity:
    name: str
    shape: tuple
    size: int
    zeros: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.size if self.size else 0.0


@dataclasses.dataclass(frozen=True)
class SparsityReport:
    """Per prunable weight: name, shape, size, zeros, sparsity; and the totals."""

    weights: tuple[WeightSparsity, ...]

    @property
    def size(self) -> int:
        return sum(w.size for w in self.weights)

    @property
    def zeros(self) -> int:
        return sum(w.zeros for w in self.weights)

    @property
    def sparsity(self) -> float:
        return self.zeros / self.size if self.size else 0.0

    def as_dict(self) -> dict:
        return {
            "weights": [
                {"name": w.name, "shape": list(w.shape), "size": w.size, "zeros": w.zeros,
                 "sparsity": w.sparsity}
                for w in self.weights
            ],
            "size": self.size,
            "zeros": self.zeros,
            "sparsity": self.sparsity,
        }

    def __str__(self) -> str:
        width = max([len(w.name) for w in self.weights] + [6])
        lines = [f"{'weight':<{width}}  {'size':>10}  {'zeros':>10}  sparsity"]
        for w in self.weights:
            lines.append(f"{w.name:<{width}}  {w.size:>10}  {w.zeros:>10}  {w.sparsity:8.4f}")
        lines.append(f"{'global':<{width}}  {self.size:>10}  {self.zeros:>10}  {self.sparsity:8.4f}")
        return "\n".join(lines)


def sparsity_report(model) -> SparsityReport:
    """Zeros in the prunable weights of `model`, per weight and globally.

    Works on pruned models (counting `W * M` of the masked weights; weights
    left unmasked by `exclude` count as they are), `DeadwoodModel`s and plain
    (e.g. stripped) models: every weight `prune_registry` finds is listed.
    """
    model = unwrap_deadwood(model)
    rows = []
    for layer, path, weight in prune_registry.prunable_variables(model):
        mask = masks.mask_of(weight)
        value = ops.convert_to_numpy(weight.value)
        if mask is not None:
            value = value * ops.convert_to_numpy(mask.value).astype(value.dtype)
        rows.append(WeightSparsity(
            name=f"{layer.name}/{path.lstrip('_')}", shape=tuple(value.shape),
            size=int(value.size), zeros=int(np.count_nonzero(value == 0))))
    return SparsityReport(tuple(rows))
