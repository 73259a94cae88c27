"""The public verbs: wrap a model for pruning, cut it, strip it, report it.

Example:

>>> import keras, deadwood_tf as dw
>>> dense = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32),
...                           keras.layers.Dense(10)])
>>> wrapped = dw.prune_model(dense)
>>> dw.apply_sparsity(wrapped, 0.9)
>>> round(dw.sparsity_report(wrapped).sparsity, 3)
0.9
>>> plain = dw.strip_pruning(wrapped)   # no deadwood class inside
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable

import keras
import numpy as np

from deadwood_tf import prune_registry, pruning_impl
from deadwood_tf.pruning_wrapper import PruningWrapper


def check_keras_model(model, name: str = "model") -> keras.Model:
    """Raises a ValueError unless `model` is a Keras 3 model."""
    if isinstance(model, keras.Model):
        return model
    module = type(model).__module__ or ""
    if module.startswith(("tf_keras", "tensorflow.python.keras", "keras.api._v2")) or (
        "keras" in module and hasattr(model, "layers")
    ):
        hint = (
            " It is a Keras 2 (tf_keras) model; rebuild it with `import keras` "
            "(Keras 3) and load its weights."
        )
    else:
        hint = ""
    raise ValueError(
        f"Invalid value for argument `{name}`: expected a Keras 3 `keras.Model`. "
        f"Received: {name} of type {type(model).__module__}.{type(model).__name__}.{hint}"
    )


def _sub_models(model: keras.Model) -> Iterable[keras.layers.Layer]:
    """Every layer of `model`, depth first, descending into nested models."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _sub_models(layer)


def pruning_wrappers(model) -> list[PruningWrapper]:
    """The `PruningWrapper`s of a wrapped model (or a DeadwoodModel), in order."""
    model = _unwrap_deadwood(model)
    seen, out = set(), []
    for layer in _sub_models(model):
        if isinstance(layer, PruningWrapper) and id(layer) not in seen:
            seen.add(id(layer))
            out.append(layer)
    return out


def pruned_weights(model) -> list:
    """Every `(weight, mask)` pair of a pruned model (or a DeadwoodModel), in order.

    The one interface the rest of the library uses to reach the masks: the
    Lagrangian's L1 term, the cuts, the reports and the baselines.
    """
    return [(w, m) for wr in pruning_wrappers(model) for _, w, m in wr.pruned_weights()]


def _unwrap_deadwood(model):
    student = getattr(model, "student", None)
    if isinstance(student, keras.Model) and hasattr(model, "teacher"):
        return student
    return check_keras_model(model)


def _is_functional_or_sequential(model) -> bool:
    return isinstance(model, keras.Sequential) or type(model).__name__ == "Functional"


def _check_clonable(model, name="model"):
    for m in [model] + [l for l in _sub_models(model) if isinstance(l, keras.Model)]:
        if not _is_functional_or_sequential(m):
            raise ValueError(
                f"Invalid value for argument `{name}`: expected a Sequential or "
                f"functional Keras model (nested ones included). Received: "
                f"'{m.name}' of subclassed type {type(m).__name__}, whose layer "
                "graph cannot be rebuilt; wrap its layers with "
                "deadwood_tf.PruningWrapper yourself."
            )
    if not model.built or not model.inputs:
        raise ValueError(
            f"Invalid value for argument `{name}`: the model must be built "
            "(give it a keras.Input or call it on data first)."
        )


def _copy_layer(layer):
    return layer.__class__.from_config(layer.get_config())


def _clone(model, make_layer: Callable, set_weights: Callable) -> keras.Model:
    """Clones `model` through `make_layer(old) -> new`, then `set_weights(old, new)`."""
    pairs = []

    def clone_function(layer):
        new = make_layer(layer)
        pairs.append((layer, new))
        return new

    clone = keras.models.clone_model(model, clone_function=clone_function, recursive=True)
    for old, new in pairs:
        set_weights(old, new)
    return clone


def prune_model(model: keras.Model, exclude=None) -> keras.Model:
    """A copy of `model` whose prunable weights carry masks (all ones at first).

    Args:
      model: a built Keras 3 Sequential or functional model; nested models are
        rebuilt too. It is not modified.
      exclude: layer names (a string or a list of strings) or a predicate
        `fn(layer) -> bool`; matching layers are copied unwrapped. Names may be
        those of layers inside nested models.

    Returns:
      A new model of the same architecture and weights in which each prunable
      layer is a `PruningWrapper` of the same name.

    Raises:
      ValueError: `model` is not a Keras 3 Sequential/functional model, is
        already wrapped, has nothing to prune, or `exclude` names unknown layers.

    Example:

    >>> wrapped = prune_model(model, exclude=["logits"])  # keep the last layer dense
    """
    check_keras_model(model)
    _check_clonable(model)
    layers = list(_sub_models(model))
    if any(isinstance(l, PruningWrapper) for l in layers):
        raise ValueError(
            "Invalid value for argument `model`: it is already wrapped for pruning "
            "(it contains PruningWrapper layers); call strip_pruning first."
        )
    if exclude is None:
        excluded = lambda layer: False  # noqa: E731
    elif callable(exclude):
        excluded = exclude
    else:
        names = [exclude] if isinstance(exclude, str) else list(exclude)
        known = {l.name for l in layers}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(
                f"Invalid value for argument `exclude`: no layer named {unknown} in "
                f"model '{model.name}'. Layer names: {sorted(known)}. Received: exclude={exclude!r}"
            )
        name_set = set(names)
        excluded = lambda layer: layer.name in name_set  # noqa: E731

    targets = {
        id(l)
        for l in layers
        if not isinstance(l, keras.Model) and prune_registry.is_prunable(l) and not excluded(l)
    }
    if not targets:
        raise ValueError(
            f"Invalid value for argument `model`: model '{model.name}' has no prunable "
            "layer (Dense, Conv*, DepthwiseConv*, SeparableConv*, Embedding, "
            "EinsumDense, MultiHeadAttention) left after `exclude`."
        )

    def make_layer(layer):
        new = _copy_layer(layer)
        if id(layer) in targets:
            new.build_from_config(layer.get_build_config())
            return PruningWrapper(new)
        return new

    def set_weights(old, new):
        (new.layer if isinstance(new, PruningWrapper) else new).set_weights(old.get_weights())

    return _clone(model, make_layer, set_weights)


def strip_pruning(model) -> keras.Model:
    """A plain Keras model computing what the wrapped `model` computes.

    Args:
      model: a model from `prune_model`, or a `DeadwoodModel` (its student).

    Returns:
      A new model with no deadwood class inside: every `PruningWrapper` becomes
      its inner layer with weights `W * M` (exact zeros where masks are 0). It
      saves and loads as `.keras` without custom objects.
    """
    model = _unwrap_deadwood(model)
    _check_clonable(model)

    def make_layer(layer):
        return _copy_layer(layer.layer if isinstance(layer, PruningWrapper) else layer)

    def set_weights(old, new):
        if isinstance(old, PruningWrapper):
            masked = {id(w): m for _, w, m in old.pruned_weights()}
            values = []
            for v in old.layer.weights:
                value = np.asarray(v.numpy())
                if id(v) in masked:
                    value = value * np.asarray(masked[id(v)].numpy(), dtype=value.dtype)
                values.append(value)
            new.set_weights(values)
        else:
            new.set_weights(old.get_weights())

    return _clone(model, make_layer, set_weights)


def apply_sparsity(model, sparsity: float, scope: str = "global", min_keep=0,
                   pattern=None) -> float:
    """Cuts a wrapped model (or a DeadwoodModel's student) to `sparsity`, in place.

    The lowest-magnitude live weights are masked; weights already masked stay
    masked. With `scope="global"` exactly `round(sparsity * P)` of the `P`
    prunable weights are zero afterwards. See `pruning_impl.keep_masks` for
    `scope`, `min_keep` and `pattern` (None, a block such as `(1, 4)` or
    "4x4", or "2:4": the same magnitude rule over block norms or N:M groups).

    Returns:
      The global sparsity after the cut.
    """
    sparsity = pruning_impl.check_sparsity(sparsity, "sparsity")
    pruning_impl.check_pattern(pattern)
    entries = [e for w in pruning_wrappers(model) for e in w.pruned_weights()]
    if not entries:
        raise ValueError(
            "Invalid value for argument `model`: it has no PruningWrapper layers; "
            "wrap it with deadwood_tf.prune_model first."
        )
    scores = []
    for _, weight, mask in entries:
        m = np.asarray(mask.numpy()) > 0
        scores.append(np.where(m, np.abs(np.asarray(weight.numpy(), dtype=np.float64)), -1.0))
    keep = pruning_impl.keep_masks(scores, sparsity, scope=scope, min_keep=min_keep,
                                   pattern=pattern)
    for (_, weight, mask), k in zip(entries, keep):
        mask.assign(k.astype(mask.dtype))
        weight.assign(np.asarray(weight.numpy()) * k.astype(weight.dtype))
    return sparsity_report(model).sparsity


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

    Works on wrapped models (counting `W * M`), `DeadwoodModel`s and plain
    (e.g. stripped) models (counting the registry's weights as they are).
    """
    model = _unwrap_deadwood(model)
    rows, seen = [], set()
    for layer in _sub_models(model):
        if id(layer) in seen or isinstance(layer, keras.Model):
            continue
        seen.add(id(layer))
        if isinstance(layer, PruningWrapper):
            items = [(p, w, m) for p, w, m in layer.pruned_weights()]
        elif prune_registry.is_prunable(layer) and layer.built:
            items = [(p, prune_registry.resolve_weight(layer, p), None)
                     for p in prune_registry.prunable_weight_paths(layer)]
        else:
            continue
        for path, weight, mask in items:
            value = np.asarray(weight.numpy())
            if mask is not None:
                value = value * np.asarray(mask.numpy(), dtype=value.dtype)
            rows.append(WeightSparsity(
                name=f"{layer.name}/{path.lstrip('_')}", shape=tuple(value.shape),
                size=int(value.size), zeros=int(np.count_nonzero(value == 0))))
    return SparsityReport(tuple(rows))
