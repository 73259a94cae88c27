"""What a model takes and returns, by name: the signature of an exported file.

`input_specs(model)` names every input of any built Keras 3 model (functional
with one or several inputs, a dict of inputs as KerasHub models take,
Sequential, subclassed) and gives its shape and dtype; `sample_inputs` makes
inputs a model accepts, of each input's dtype and range; `as_model_inputs` puts
inputs given by name into the structure the model's `call` takes, and
`named_outputs` names its outputs. `export_tflite` writes a file whose
signature uses these names, and verifies it on these inputs.

Generated inputs (`sample_inputs`), per input:
  - float: uniform in [0, 1), or in `input_ranges[name]`;
  - integer or bool named like a mask (`...mask`): padding masks, 1 for a
    random-length prefix of at least one position along axis 1, 0 after it;
  - integer ids that feed an `Embedding` (directly, or through a layer holding
    one, such as KerasHub's `TokenAndPositionEmbedding`, also inside nested
    models): uniform in [0, input_dim) of that embedding; otherwise
    `input_ranges[name]` = (low, high) is needed (a ValueError says so);
  - axes the model leaves open (None, e.g. the sequence length) have
    `OPEN_AXIS_LENGTH` entries.

Example:

    specs = input_specs(bert_classifier)
    [(s.name, s.dtype) for s in specs]
    # [('padding_mask', 'int32'), ('segment_ids', 'int32'), ('token_ids', 'int32')]
    x = sample_inputs(bert_classifier, specs, 16)   # {name: array}
    y = named_outputs(bert_classifier, bert_classifier(as_model_inputs(specs, x)))
"""

from __future__ import annotations

import dataclasses
import re

import keras
import numpy as np

from deadwood_tf import compat, prune_registry

OPEN_AXIS_LENGTH = 8


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One input: its name, its shape without the batch axis (None where open),
    its dtype, and where it sits in the structure the model's `call` takes
    (`path`: the keys and indices that reach it; () for a single input)."""
    name: str
    shape: tuple
    dtype: str
    path: tuple = ()


def _leaves(structure, path=()):
    """(path, leaf) of a nest of dicts, lists and tuples, dict keys sorted."""
    if isinstance(structure, dict):
        return [p for k in sorted(structure) for p in _leaves(structure[k], path + (k,))]
    if isinstance(structure, (list, tuple)):
        return [p for i, v in enumerate(structure) for p in _leaves(v, path + (i,))]
    return [(path, structure)]


def _unique(names):
    seen, out = {}, []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name] - 1}")
    return out


def _from_structure(structure, default_dtype) -> list:
    leaves = _leaves(structure)
    names = []
    for i, (path, leaf) in enumerate(leaves):
        name = getattr(leaf, "name", None)
        if name and re.fullmatch(r"keras_tensor(_\d+)?", name):
            name = None  # an unnamed keras.Input: Keras' counter, not a name
        if path and isinstance(path[-1], str):
            name = path[-1]
        names.append(name or ("input" if len(leaves) == 1 else f"input_{i}"))
    specs = []
    for name, (path, leaf) in zip(_unique(names), leaves):
        shape = getattr(leaf, "shape", None)
        if shape is None:
            raise ValueError(
                "Invalid value for argument `input_signature`: expected keras.InputSpec or "
                f"tf.TensorSpec objects with a shape (batch axis first). Received: {leaf!r}")
        dtype = getattr(leaf, "dtype", None) or default_dtype
        specs.append(InputSpec(name, tuple(None if d is None else int(d) for d in shape[1:]),
                               keras.backend.standardize_dtype(getattr(dtype, "name", dtype)),
                               path))
    return specs


def _symbolic_input(model):
    """The model's symbolic input structure (functional: as its `call` takes
    it; Sequential: its one input), or None (subclassed)."""
    # A Sequential model's `input` is that of its latest call (inside another
    # model, a tensor of that model); its `inputs` are its own.
    for attribute in ("inputs",) if isinstance(model, keras.Sequential) else ("input", "inputs"):
        try:
            structure = getattr(model, attribute)
        except (AttributeError, ValueError):  # "never been called", subclassed
            continue
        if isinstance(structure, list) and len(structure) == 1:
            return structure[0]
        if structure is not None and (not isinstance(structure, list) or structure):
            return structure
    return None


def input_specs(model, input_signature=None) -> list:
    """The inputs of `model`, named, in a fixed order.

    Args:
      model: a built Keras 3 model.
      input_signature: for models without symbolic inputs (subclassed): a
        keras.InputSpec / tf.TensorSpec, or a list, tuple or dict of them,
        in the structure the model's `call` takes, batch axis first. Names:
        dict keys, else the specs' names, else `input` / `input_<i>`.
        Without it, a subclassed model's inputs are the shapes it was built
        or first called with (float, the model's input dtype).

    Returns:
      A list of `InputSpec`, dict inputs in key order, lists in their order.
      Names: a dict's keys, else the `keras.Input` (or spec) names; an
      unnamed input (Keras' own `keras_tensor_<n>`) is `input` (one input)
      or `input_<i>`.

    Raises:
      ValueError: a subclassed model never built or called and no
        `input_signature`, or a spec without a shape.
    """
    if input_signature is not None:
        return _from_structure(input_signature, model.input_dtype)
    structure = _symbolic_input(model)
    if structure is None:
        shapes = compat.build_input_shapes(model)
        if not shapes:
            raise ValueError(
                "Invalid value for argument `input_signature`: model "
                f"'{model.name}' of type {type(model).__name__} has no symbolic inputs and "
                "was never built or called, so its inputs are unknown; pass "
                "input_signature=keras.InputSpec(shape=(None, ...), dtype=...) (or a list / "
                "dict of them). Received: input_signature=None")
        structure = [keras.KerasTensor(s, dtype=model.input_dtype) for s in shapes]
        if len(structure) == 1:
            structure = structure[0]
    return _from_structure(structure, model.input_dtype)


def as_model_inputs(specs, by_name: dict):
    """`by_name` ({input name: value}) in the structure the model's `call` takes."""
    if len(specs) == 1 and not specs[0].path:
        return by_name[specs[0].name]
    root = {} if isinstance(specs[0].path[0], str) else []
    for spec in specs:
        node = root
        for key, nxt in zip(spec.path, spec.path[1:] + (None,)):
            if nxt is None:
                value = by_name[spec.name]
            else:
                value = {} if isinstance(nxt, str) else []
            if isinstance(node, dict):
                node = node.setdefault(key, value)
            else:
                if key == len(node):
                    node.append(value)
                node = node[key]
    return root


def named_output_tensors(model, outputs) -> dict:
    """`{name: tensor}` of a model's outputs: dict keys, else the functional
    model's output names, else `output_<i>`."""
    if isinstance(outputs, dict):
        return {str(k): outputs[k] for k in sorted(outputs)}
    flat = keras.tree.flatten(outputs)
    names = list(getattr(model, "output_names", None) or ())
    if len(names) != len(flat) or len(set(names)) != len(names):
        names = [f"output_{i}" for i in range(len(flat))]
    return dict(zip(names, flat))


def named_outputs(model, outputs) -> dict:
    """`named_output_tensors` as numpy arrays."""
    return {name: np.asarray(keras.ops.convert_to_numpy(v))
            for name, v in named_output_tensors(model, outputs).items()}


def _is_mask(spec) -> bool:
    return spec.dtype == "bool" or spec.name.lower().endswith("mask")


def _embedding_size(layer):
    """The vocabulary size of `layer` if it is or holds an Embedding, else None."""
    if isinstance(layer, keras.layers.Embedding):
        return layer.input_dim
    sizes = [sub.input_dim for sub in prune_registry.sublayers(layer)
             if isinstance(sub, keras.layers.Embedding)]
    return min(sizes) if sizes else None


def vocabulary_sizes(model, specs) -> dict:
    """{input name: input_dim of the Embedding that input feeds}, for the
    inputs of a functional model that feed one (nested models followed)."""
    out = {}
    structure = _symbolic_input(model)
    if structure is None:
        return out
    tensors = dict(zip([s.name for s in specs], [leaf for _, leaf in _leaves(structure)]))
    for name, tensor in tensors.items():
        size = _consumer_embedding_size(model, tensor, depth=0)
        if size is not None:
            out[name] = size
    return out


def _consumer_embedding_size(model, tensor, depth):
    if depth > 4:
        return None
    for operation in getattr(model, "operations", None) or model.layers:
        for node in compat.inbound_nodes(operation):
            inputs = list(node.input_tensors)
            if not any(t is tensor for t in inputs):
                continue
            size = _embedding_size(operation)
            if size is not None:
                return size
            inner_input = _symbolic_input(operation) if isinstance(operation, keras.Model) \
                else None
            if inner_input is not None:
                # A nested model: follow the tensor to its own input.
                inner = keras.tree.flatten(inner_input)
                for outer_t, inner_t in zip(inputs, inner):
                    if outer_t is tensor:
                        size = _consumer_embedding_size(operation, inner_t, depth + 1)
                        if size is not None:
                            return size
    return None


def sample_inputs(model, specs, n: int, seed: int = 0, input_ranges=None) -> dict:
    """`{name: array}` of `n` generated inputs (see the module docstring)."""
    rng = np.random.default_rng(seed)
    input_ranges = dict(input_ranges or {})
    unknown = sorted(set(input_ranges) - {s.name for s in specs})
    if unknown:
        raise ValueError(
            f"Invalid value for argument `input_ranges`: no input named {unknown}; the "
            f"inputs are {[s.name for s in specs]}. Received: input_ranges={input_ranges!r}")
    vocabulary = vocabulary_sizes(model, specs)
    out = {}
    for spec in specs:
        shape = (n, *(OPEN_AXIS_LENGTH if d is None else d for d in spec.shape))
        floating = np.issubdtype(np.dtype(spec.dtype), np.floating)
        if spec.name in input_ranges:
            low, high = input_ranges[spec.name]
            value = rng.uniform(low, high, shape) if floating else rng.integers(low, high, shape)
        elif floating:
            value = rng.uniform(0.0, 1.0, shape)
        elif _is_mask(spec):
            value = np.zeros(shape)
            if len(shape) >= 2:
                for row, length in zip(value, rng.integers(1, shape[1] + 1, n)):
                    row[:length] = 1
            else:
                value = rng.integers(0, 2, shape)
        elif spec.name in vocabulary:
            value = rng.integers(0, vocabulary[spec.name], shape)
        else:
            raise ValueError(
                f"Invalid value for argument `input_ranges`: input '{spec.name}' takes "
                f"{spec.dtype} values that feed no Embedding layer, so their range is "
                f"unknown; pass input_ranges={{'{spec.name}': (low, high)}} or "
                "sample_inputs. Received: input_ranges=" + repr(input_ranges or None))
        out[spec.name] = np.asarray(value).astype(spec.dtype)
    return out


def check_inputs(specs, value, name="sample_inputs") -> dict:
    """`value` (a dict by input name, a list in `specs` order, or one array
    for a one-input model) as `{name: array}` of each input's dtype.

    Raises:
      ValueError (naming `name`): wrong names or count, a shape that does not
      fit the input's, batch sizes that differ, floats for an integer input.
    """
    names = [s.name for s in specs]
    if isinstance(value, dict):
        if set(value) != set(names):
            raise ValueError(
                f"Invalid value for argument `{name}`: expected a dict with the keys {names}. "
                f"Received: keys {sorted(value)}")
        by_name = dict(value)
    elif isinstance(value, (list, tuple)) and len(specs) > 1:
        if len(value) != len(specs):
            raise ValueError(
                f"Invalid value for argument `{name}`: expected {len(specs)} arrays, one per "
                f"input {names}. Received: {len(value)}")
        by_name = dict(zip(names, value))
    elif len(specs) == 1:
        by_name = {names[0]: value}
    else:
        raise ValueError(
            f"Invalid value for argument `{name}`: the model has {len(specs)} inputs "
            f"{names}; expected a dict by input name or a list in that order. Received: "
            f"{type(value).__name__}")
    out, batch = {}, set()
    for spec in specs:
        array = np.asarray(by_name[spec.name])
        want = np.dtype(spec.dtype)
        if np.issubdtype(array.dtype, np.floating) and not np.issubdtype(want, np.floating):
            raise ValueError(
                f"Invalid value for argument `{name}`: input '{spec.name}' takes {spec.dtype} "
                f"values (ids, masks). Received: {array.dtype}")
        fits = array.ndim == len(spec.shape) + 1 and all(
            d is None or d == a for d, a in zip(spec.shape, array.shape[1:]))
        if not fits or not len(array):
            raise ValueError(
                f"Invalid value for argument `{name}`: input '{spec.name}' expected shape "
                f"(n, *{spec.shape}) with n >= 1 (None: any length). Received: shape "
                f"{array.shape}")
        batch.add(len(array))
        out[spec.name] = array.astype(want)
    if len(batch) > 1:
        raise ValueError(f"Invalid value for argument `{name}`: expected one batch size for "
                         f"every input. Received: {sorted(batch)}")
    return out
