"""Channel groups: what must go together when one channel is removed.

For every output channel of a prunable producer (Dense, Conv1D/2D/3D) the
graph of a functional Keras model decides what else depends on it, as in
Torch-Pruning's DepGraph (Fang et al., CVPR 2023):

- the producer's kernel slice `kernel[..., c]` and its bias `bias[c]`;
- BatchNormalization's `gamma/beta/moving_mean/moving_variance[c]`;
- a DepthwiseConv2D's kernel slice for that channel (depthwise layers pass a
  channel through: their input and output channels are the same group);
- every consumer's input slice `kernel[..., c, :]`;
- Add, Subtract, Multiply, Average, Maximum, Minimum tie channel `c` of all
  their inputs into one group (a residual stream is one group per channel);
- Concatenate puts each input's channels at its offset;
- Flatten expands a channel to its `H*W` positions in the next Dense;
- pooling, padding, cropping, up-sampling, dropout, noise and activations
  whose value at 0 is 0 pass channels through.

Groups are computed once, as data (`ChannelGroups`). A layer or operation that
the analysis does not cover, a layer called twice, a subclassed model or an
activation with f(0) != 0 on a prunable channel is refused with a ValueError
naming the layer: nothing is guessed. Channels of the model's inputs and
outputs are never grouped (never pruned). Layers that only see input-derived
channels (e.g. `Rescaling` right after the input) are allowed whatever they
are, since none of their channels can be pruned.

Exactness: deleting a cut channel (`shrink.shrink_model`) must change nothing.
`cut_channels` masks every kernel slice of the group through
`prune.pruned_weights`: the producers' output slices and, which is what makes
the deletion exact, every consumer's input slice. Whatever value a cut channel
still carries (its bias or batch-norm beta are trainable and not masked, so
fine-tuning may move them), no kernel reads it and it reaches no output. The
cut also zeroes the producer's bias and the batch norm's gamma and beta of
the channel at cut time (as Torch-Pruning removes them), so that right after
a cut the masked model's removed channels are exactly 0.

Example:

    groups = channel_groups(model)
    len(groups.groups), groups.total_macs
    cut_channels(pruned, 0.5)          # remove half the MACs, whole groups
    small = shrink.shrink_model(pruned)
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from deadwood_tf import channel_impl, compat

L = keras.layers

PRODUCERS = (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D)
DEPTHWISE = (L.DepthwiseConv1D, L.DepthwiseConv2D)
NORMS = (L.BatchNormalization,)
MERGES = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)
PASS_THROUGH = (
    L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D,
    L.GaussianNoise, L.GaussianDropout, L.AlphaDropout, L.ActivityRegularization,
    L.Identity,
    L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D,
    L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D,
    L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
    L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
    L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D,
    L.Cropping1D, L.Cropping2D, L.Cropping3D,
    L.UpSampling1D, L.UpSampling2D, L.UpSampling3D,
)
ACTIVATIONS = (L.Activation, L.ReLU, L.LeakyReLU, L.ELU)
SUPPORTED = ("Dense, Conv1D/2D/3D (groups=1), DepthwiseConv1D/2D, BatchNormalization "
             "(last axis), Add/Subtract/Multiply/Average/Maximum/Minimum, Concatenate, "
             "Flatten, pooling, padding, cropping, up-sampling, dropout/noise, activations "
             "with f(0)=0")


@dataclasses.dataclass(frozen=True)
class WeightSlice:
    """Indices `indices` along `axis` of weight `weight` ("kernel", "bias", "gamma",
    ...) of layer `layer`. `role`: "output" (a producer's kernel), "input" (a
    consumer's kernel), "depthwise" (a depthwise kernel), "bias" or "norm" (not
    masked weights: zeroed when the group is cut)."""

    layer: str
    weight: str
    axis: int
    indices: tuple
    role: str

    @property
    def masked(self) -> bool:
        return self.role in ("output", "input", "depthwise")


@dataclasses.dataclass(frozen=True)
class ChannelGroup:
    """One removable unit: the slices that go together and what removing it saves.

    `macs`: multiply-accumulates saved by removing this group alone (of the
    kernel layers; exact, overlaps with neighbouring groups counted once per
    group). `size`: number of kernel weights in its masked slices. `channels`:
    the channels it removes, as `(layer, index)` of the producers' outputs.
    """

    index: int
    slices: tuple
    macs: int
    size: int

    @property
    def channels(self) -> tuple:
        return tuple((s.layer, i) for s in self.slices if s.role == "output"
                     for i in s.indices)


@dataclasses.dataclass(frozen=True)
class LayerChannels:
    """Per layer with weights: which group each input and output channel belongs to
    (-1: never pruned). `kind`: "kernel", "depthwise" or "norm". `mac_factor`:
    MACs per (input, output) channel pair ("kernel") or per output channel
    ("depthwise"); 0 for "norm"."""

    name: str
    kind: str
    in_groups: np.ndarray
    out_groups: np.ndarray
    mac_factor: int


@dataclasses.dataclass(frozen=True)
class ChannelGroups:
    """The groups of a model and the per-layer channel maps (see `channel_groups`)."""

    groups: tuple
    layers: tuple
    tables: channel_impl.MacTables

    @property
    def total_macs(self) -> int:
        return self.macs(np.ones(len(self.groups), bool))

    def macs(self, keep) -> int:
        """MACs of the kernel layers when only the groups with `keep[g]` remain."""
        return channel_impl.macs(self.tables, np.asarray(keep, bool))

    def layer(self, name: str) -> LayerChannels:
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(name)


def _refuse(layer, reason: str):
    raise ValueError(
        f"Invalid value for argument `model`: cannot compute channel groups through "
        f"layer '{getattr(layer, 'name', layer)}' ({type(layer).__name__}): {reason}. "
        f"Supported: {SUPPORTED}; layers that only see the model's input channels may be "
        "anything.")


class _UnionFind:
    def __init__(self):
        self.parent, self.fixed = [], []

    def new(self, n: int, fixed: bool) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        self.fixed.extend([fixed] * n)
        return np.arange(start, start + n)

    def find(self, a: int) -> int:
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a: int, b: int):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            self.fixed[ra] = self.fixed[ra] or self.fixed[rb]

    def fix(self, a: int):
        self.fixed[self.find(a)] = True


def _zero_preserving(fn, layer) -> None:
    out = np.asarray(keras.ops.convert_to_numpy(fn(keras.ops.zeros((1, 4)))))
    if np.any(out != 0):
        _refuse(layer, "its activation maps 0 to a non-zero value, so a removed channel "
                       "would not be zero downstream")


def _kernel_layer_checks(layer):
    if getattr(layer, "groups", 1) != 1:
        _refuse(layer, "grouped convolutions are not supported")
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        _refuse(layer, "only channels_last is supported")


class _Walker:
    """Walks the functional graph once, giving every tensor a channel map."""

    def __init__(self, model):
        self.model = model
        self.uf = _UnionFind()
        self.tensor_atoms = {}
        self.seen_ops = {}
        self.members = []   # (atom, layer, weight, axis, position, role)
        self.layer_maps = []  # (name, kind, in_atoms, out_atoms, mac_factor)

    def atoms(self, tensor) -> np.ndarray:
        key = id(tensor)
        if key in self.tensor_atoms:
            return self.tensor_atoms[key]
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            raise ValueError(
                "Invalid value for argument `model`: a tensor of its graph has no "
                "Keras history; pass a functional or Sequential Keras model.")
        op, node_index, tensor_index = history
        node = compat.inbound_node(op, node_index)
        if id(op) in self.seen_ops and self.seen_ops[id(op)] is not node:
            _refuse(op, "the layer is called more than once (shared weights)")
        self.seen_ops[id(op)] = node
        if not node.input_tensors:  # an InputLayer
            outs = [self.uf.new(int(t.shape[-1]), fixed=True) for t in node.output_tensors]
        else:
            ins = [self.atoms(t) for t in node.input_tensors]
            outs = self.visit(op, node, ins)
        for t, a in zip(node.output_tensors, outs):
            self.tensor_atoms[id(t)] = a
        return self.tensor_atoms[key]

    def all_fixed(self, atoms_list) -> bool:
        return all(self.uf.fixed[self.uf.find(int(a))] for a in np.concatenate(atoms_list))

    def visit(self, op, node, ins):
        layer = op
        outs = node.output_tensors
        if isinstance(layer, keras.Model):
            _refuse(layer, "nested models are not supported; build the model flat")
        if isinstance(layer, PRODUCERS):
            _kernel_layer_checks(layer)
            return [self.producer(layer, ins[0], outs[0])]
        if isinstance(layer, DEPTHWISE):
            _kernel_layer_checks(layer)
            return [self.depthwise(layer, ins[0], outs[0])]
        if isinstance(layer, NORMS):
            if layer.axis not in (-1, len(node.input_tensors[0].shape) - 1):
                _refuse(layer, f"only the last axis is supported, got axis={layer.axis}")
            self.norm(layer, ins[0])
            return [ins[0]]
        if isinstance(layer, MERGES):
            return self.tie(layer, ins)
        if isinstance(layer, L.Concatenate):
            rank = len(outs[0].shape)
            if layer.axis in (-1, rank - 1):
                return [np.concatenate(ins)]
            return self.tie(layer, ins)  # along another axis: like Add
        if isinstance(layer, L.Flatten):
            shape = node.input_tensors[0].shape
            if getattr(layer, "data_format", "channels_last") != "channels_last":
                _refuse(layer, "only channels_last is supported")
            if any(d is None for d in shape[1:]):
                _refuse(layer, "its input needs a static shape")
            return [np.tile(ins[0], int(np.prod(shape[1:-1], dtype=np.int64)))]
        if isinstance(layer, PASS_THROUGH):
            if getattr(layer, "data_format", "channels_last") != "channels_last":
                _refuse(layer, "only channels_last is supported")
            return [ins[0]]
        if isinstance(layer, ACTIVATIONS):
            if not self.all_fixed(ins):
                _zero_preserving(layer, layer)
            return [ins[0]]
        if isinstance(layer, L.Softmax):
            # Mixes the channels of its axis: they must all stay.
            for a in ins[0]:
                self.uf.fix(int(a))
            return [ins[0]]
        if self.all_fixed(ins) and len(outs) == 1:
            # Only input-derived channels reach it: nothing of it can be pruned.
            return [self.uf.new(int(outs[0].shape[-1]), fixed=True)]
        _refuse(layer, "this layer or operation is not analysed")

    def tie(self, layer, ins):
        """Channel c of every input becomes one group (element-wise merges)."""
        if any(len(a) != len(ins[0]) for a in ins):
            _refuse(layer, "its inputs have different channel counts (broadcasting)")
        for a in ins[1:]:
            for x, y in zip(ins[0], a):
                self.uf.union(int(x), int(y))
        return [ins[0]]

    def spatial(self, tensor) -> int:
        dims = tensor.shape[1:-1]
        if any(d is None for d in dims):
            return 1  # unknown spatial size: count MACs per position
        return int(np.prod(dims, dtype=np.int64))

    def producer(self, layer, in_atoms, out_tensor):
        _zero_preserving(layer.activation, layer)
        kernel = layer.kernel
        n_out = int(kernel.shape[-1])
        out_atoms = self.uf.new(n_out, fixed=False)
        rank = len(kernel.shape)
        if int(kernel.shape[-2]) != len(in_atoms):
            _refuse(layer, f"its kernel takes {kernel.shape[-2]} channels, the graph gives "
                           f"{len(in_atoms)}")
        for pos, a in enumerate(in_atoms):
            self.members.append((int(a), layer.name, "kernel", rank - 2, pos, "input"))
        for pos, a in enumerate(out_atoms):
            self.members.append((int(a), layer.name, "kernel", rank - 1, pos, "output"))
            if layer.use_bias:
                self.members.append((int(a), layer.name, "bias", 0, pos, "bias"))
        k_spatial = int(np.prod(kernel.shape[:-2], dtype=np.int64))
        self.layer_maps.append((layer.name, "kernel", in_atoms, out_atoms,
                                k_spatial * self.spatial(out_tensor)))
        return out_atoms

    def depthwise(self, layer, in_atoms, out_tensor):
        _zero_preserving(layer.activation, layer)
        kernel = layer.kernel  # (k..., channels, depth_multiplier)
        dm = int(kernel.shape[-1])
        out_atoms = np.repeat(in_atoms, dm)
        for pos, a in enumerate(in_atoms):
            self.members.append((int(a), layer.name, "kernel", len(kernel.shape) - 2, pos,
                                 "depthwise"))
        if layer.use_bias:
            for pos, a in enumerate(out_atoms):
                self.members.append((int(a), layer.name, "bias", 0, pos, "bias"))
        k_spatial = int(np.prod(kernel.shape[:-2], dtype=np.int64))
        self.layer_maps.append((layer.name, "depthwise", in_atoms, out_atoms,
                                k_spatial * self.spatial(out_tensor)))
        return out_atoms

    def norm(self, layer, atoms):
        for pos, a in enumerate(atoms):
            for w in ("gamma", "beta", "moving_mean", "moving_variance"):
                if getattr(layer, w, None) is not None:
                    self.members.append((int(a), layer.name, w, 0, pos, "norm"))
        self.layer_maps.append((layer.name, "norm", atoms, atoms, 0))


def channel_groups(model) -> ChannelGroups:
    """The channel groups of a functional or Sequential Keras model.

    Args:
      model: a built functional/Sequential Keras 3 model with one or more inputs
        and outputs, plain or pruned (the masks live on its variables). Not
        modified.

    Returns:
      `ChannelGroups`: `groups`, a tuple of `ChannelGroup` (index, slices, macs,
      size) in the order of their first producer; `layers`, a `LayerChannels`
      per layer with weights (group of each input/output channel, -1 for
      channels that are never pruned); `total_macs` and `macs(keep)`.

    Raises:
      ValueError: naming the layer, for anything the analysis does not cover
        (see the module docstring), or a model that is not a built
        functional/Sequential Keras model.
    """
    if not isinstance(model, keras.Model):
        raise ValueError("Invalid value for argument `model`: expected a Keras 3 "
                         f"`keras.Model`. Received: model of type {type(model).__name__}")
    student = getattr(model, "student", None)
    if isinstance(student, keras.Model) and hasattr(model, "teacher"):
        model = student
    if not (isinstance(model, keras.Sequential) or type(model).__name__ == "Functional"):
        _refuse(model, "subclassed models have no graph to analyse; build it with the "
                       "functional API")
    if not model.built or not model.inputs:
        raise ValueError("Invalid value for argument `model`: the model must be built "
                         "(give it a keras.Input).")
    walker = _Walker(model)
    for out in model.outputs:
        for a in walker.atoms(out):
            walker.uf.fix(int(a))
    uf = walker.uf
    group_of_root, order = {}, []
    for atom, *_ in walker.members:
        root = uf.find(atom)
        if not uf.fixed[root] and root not in group_of_root:
            group_of_root[root] = len(order)
            order.append(root)

    def group_ids(atoms):
        return np.array([group_of_root.get(uf.find(int(a)), -1) for a in atoms], np.int64)

    collected = [dict() for _ in order]
    for atom, lname, weight, axis, pos, role in walker.members:
        g = group_of_root.get(uf.find(atom))
        if g is not None:
            collected[g].setdefault((lname, weight, axis, role), []).append(pos)
    layers = tuple(LayerChannels(name, kind, group_ids(ia), group_ids(oa), int(f))
                   for name, kind, ia, oa, f in walker.layer_maps)
    shapes = {}
    for l in model.layers:
        inner = l
        for w in ("kernel",):
            if getattr(inner, w, None) is not None and hasattr(inner.kernel, "shape"):
                shapes[inner.name] = tuple(int(d) for d in inner.kernel.shape)
    kernel = [l for l in layers if l.kind != "norm"]
    tables = channel_impl.mac_tables(
        [l.in_groups for l in kernel], [l.out_groups for l in kernel],
        [l.mac_factor for l in kernel], [l.kind == "depthwise" for l in kernel], len(order))
    full = channel_impl.macs(tables, np.ones(len(order), bool))
    groups = []
    for g, parts in enumerate(collected):
        slices = tuple(WeightSlice(lname, w, axis, tuple(sorted(pos)), role)
                       for (lname, w, axis, role), pos in parts.items())
        size = 0
        for s in slices:
            if s.masked:
                shape = shapes[s.layer]
                size += len(s.indices) * int(np.prod(shape, dtype=np.int64)) // shape[s.axis]
        keep = np.ones(len(order), bool)
        keep[g] = False
        groups.append(ChannelGroup(g, slices, full - channel_impl.macs(tables, keep), size))
    return ChannelGroups(tuple(groups), layers, tables)


# ---------------------------------------------------------------------------
# Reading and writing the groups' weights of a model.


def _layers_by_name(model) -> dict:
    student = getattr(model, "student", None)
    if isinstance(student, keras.Model) and hasattr(model, "teacher"):
        model = student
    return {l.name: l for l in model.layers}


def _masks_by_weight(model) -> dict:
    from deadwood_tf import prune  # prune imports the wrapper machinery; keep it lazy

    return {id(w): m for w, m in prune.pruned_weights(model)}


def _index(s: WeightSlice, ndim: int):
    idx = [slice(None)] * ndim
    idx[s.axis] = list(s.indices)
    return tuple(idx)


def kernel_slices(model, groups: ChannelGroups, read: str = "effective"):
    """Yields `(group index, array)` for every masked kernel slice of every group.

    `read`: "effective" (`W * M`), "weights" (`W`) or "masks" (`M`; a weight
    without a mask reads as ones). Arrays are float64 copies."""
    layers = _layers_by_name(model)
    masks = _masks_by_weight(model) if read != "weights" else {}
    values = {}
    for g in groups.groups:
        for s in g.slices:
            if not s.masked:
                continue
            key = (s.layer, s.weight)
            if key not in values:
                var = getattr(layers[s.layer], s.weight)
                w = np.asarray(keras.ops.convert_to_numpy(var), np.float64)
                m = masks.get(id(var))
                m = np.ones_like(w) if m is None else np.asarray(
                    keras.ops.convert_to_numpy(m), np.float64)
                values[key] = w * m if read == "effective" else (w if read == "weights" else m)
            v = values[key]
            yield g.index, v[_index(s, v.ndim)]


def group_energies(model, groups: ChannelGroups) -> np.ndarray:
    """Per group: the sum of squares of its masked kernel slices (`W * M`)."""
    out = np.zeros(len(groups.groups))
    for g, v in kernel_slices(model, groups):
        out[g] += float(np.sum(v ** 2))
    return out


def _families(groups: ChannelGroups) -> np.ndarray:
    """Per group: an id shared by the groups whose channels come from the same
    producer layers (a layer's channels, or a residual stream's)."""
    keys = [tuple(sorted({layer for layer, _ in g.channels})) for g in groups.groups]
    index = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    return np.array([index[k] for k in keys], dtype=int)


def filter_l1_norms(model, groups: ChannelGroups, per_layer: bool = False) -> np.ndarray:
    """Per group: the L1 norm of its producers' filters (`W * M`), the criterion of
    L1-norm filter pruning (Li et al., 2017); pass it as `cut_channels(energies=)`
    with `normalize="none"`.

    Li et al. rank the filters within each layer and prune every layer by a
    ratio. `per_layer=True` returns each group's rank within its producer
    layers, as a fraction in (0, 1] (1/n for the smallest L1 of n): a global
    cut on it removes about the same fraction of every layer's channels, lowest
    L1 first, until the MACs target is met. A global ranking of the raw L1 norms
    is biased by fan-in: at half a ResNet-20's MACs it cut every first-stage
    block's first convolution to 1 channel (by the plain sum) or the whole third
    stage to 1 channel (by the mean abs(w))."""
    out = np.zeros(len(groups.groups))
    outputs = [s.role == "output" for g in groups.groups for s in g.slices if s.masked]
    for (g, v), is_output in zip(kernel_slices(model, groups), outputs):
        if is_output:
            out[g] += float(np.sum(np.abs(v)))
    if not per_layer:
        return out
    family = _families(groups)
    ranks = np.zeros_like(out)
    for f in np.unique(family):
        members = np.flatnonzero(family == f)
        order = np.argsort(out[members], kind="stable")
        ranks[members[order]] = (np.arange(len(members)) + 1) / len(members)
    return ranks


def zero_groups(model, groups: ChannelGroups, read: str = "masks") -> np.ndarray:
    """Per group: True when all of its kernel slices read as 0 (`read` as in
    `kernel_slices`): with "masks", the groups already cut."""
    zero = np.ones(len(groups.groups), bool)
    for g, v in kernel_slices(model, groups, read):
        zero[g] &= not np.any(v != 0)
    return zero


def _apply(model, groups: ChannelGroups, cut: np.ndarray):
    """Masks and zeroes every slice of the groups with `cut[g]`; zeroes their bias
    and batch-norm gamma/beta (running statistics are kept: with gamma = beta = 0
    a batch norm outputs 0 whatever they are)."""
    layers = _layers_by_name(model)
    masks = _masks_by_weight(model)
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
        mask = masks.get(id(var))
        mvalue = None if mask is None else np.array(keras.ops.convert_to_numpy(mask))
        if slices[0].masked and mask is None:
            raise ValueError(
                f"Invalid value for argument `model`: layer '{lname}' has no mask on its "
                f"{wname}; wrap the model with deadwood_tf.prune_model first.")
        for s in slices:
            value[_index(s, value.ndim)] = 0
            if mvalue is not None:
                mvalue[_index(s, mvalue.ndim)] = 0
        if mask is not None:
            mask.assign(mvalue)
        var.assign(value)


def cut_channels(model, target: float, unit: str = "flops", normalize: str = "layer",
                 groups: ChannelGroups | None = None, energies=None,
                 min_channels: int = 1, round_to: int = 1) -> dict:
    """Cuts whole channel groups of a wrapped model, in place, lowest scores first.

    Groups already cut stay cut (a channel once cut stays cut); the cut then
    grows until `target` is reached. Every producer keeps at least
    `min_channels` output channels.

    Args:
      model: a model from `prune_model` (or a DeadwoodModel); its masks are
        reached through `prune.pruned_weights`.
      target: in [0, 1): the fraction of the kernel layers' MACs (`unit="flops"`)
        or of the channel groups (`unit="channels"`) to remove.
      unit: "flops" (preferred: it is what the cut saves) or "channels".
      normalize: how a group's squared L2 norm is scored: "layer" (default:
        divided by its number of weights, then by the mean of that over the
        live groups of the same producer layers, so each channel is ranked
        against its own layer's), "size" (divided by its number of weights),
        "macs" (by the MACs it costs) or "none". With "size", a ResNet-20 on
        cifar10k had its whole third stage cut to 1 channel at half the MACs
        (13% clean accuracy after fine-tuning; docs/benchmarks.md).
      groups: `channel_groups(model)`, if already computed.
      energies: per-group scores to use instead of the squared norms (e.g. the
        L1 filter norms of a baseline); `normalize` still applies.
      min_channels: the layer-collapse guard (an int >= 1). A 1-channel layer
        is legal; if its channel is dead on the calibration data, the int8
        export widens its range so that XNNPack takes the file
        (docs/int8_xnnpack.md).
      round_to: every producer keeps a multiple of this many output channels
        (or its full width), never fewer than `round_to`: the cut removes
        whole aligned blocks, lowest mean score first, and may pass `target`
        by one block. 8 makes the shrunk model run nearer the speed its MACs
        promise on SIMD kernels (docs/benchmarks.md: a ResNet-20 at 12/24/48
        channels cut to 50% of its MACs ran 1.54x faster on LiteRT, x86;
        aligned to 8, 1.76-1.84x).

    Returns:
      dict with `groups_cut`, `groups`, `macs`, `dense_macs`, `flops_removed`.
    """
    target = channel_impl.check_fraction(target, "target")
    channel_impl.check_choice(unit, "unit", channel_impl.UNITS)
    channel_impl.check_choice(normalize, "normalize", channel_impl.NORMALIZE)
    groups = groups or channel_groups(model)
    if not groups.groups:
        raise ValueError("Invalid value for argument `model`: it has no prunable channel "
                         "group (only the input and output channels, which are kept).")
    if energies is None:
        energies = group_energies(model, groups)
    scores = channel_impl.group_scores(
        energies, np.array([g.size for g in groups.groups]),
        np.array([g.macs for g in groups.groups]), normalize)
    already = zero_groups(model, groups)
    if normalize == "layer":
        scores = channel_impl.relative_to_family(scores, _families(groups), ~already)
    if isinstance(min_channels, bool) or not isinstance(min_channels, (int, np.integer)) \
            or min_channels < 1:
        raise ValueError("Invalid value for argument `min_channels`: expected an int >= 1. "
                         f"Received: min_channels={min_channels!r}")
    cut = channel_impl.groups_to_cut(scores, already, target, groups.tables, unit,
                                     min_channels=int(min_channels), multiple=round_to)
    _apply(model, groups, cut)
    dense = groups.total_macs
    macs = groups.macs(~cut)
    return {"groups_cut": int(cut.sum()), "groups": len(groups.groups), "macs": macs,
            "dense_macs": dense, "flops_removed": 1.0 - macs / dense if dense else 0.0}


def group_lasso(model, groups: ChannelGroups | None = None):
    """The group-lasso term over the channel groups, as a function of no arguments.

    `Omega_g(w) = sum_g sqrt(n_g) * ||(W * M)_g||_2 / P`: each group's L2 norm
    over all its masked kernel slices, weighted by the square root of its size
    `n_g` (the usual group-lasso weighting, so that with one weight per group
    it is the L1 term `sum |w| / P` of the unstructured method), divided by
    the number `P` of kernel weights in groups. It drives whole groups towards
    zero, so that the whole-group cut removes little that matters.

    Returns:
      `fn() -> scalar tensor`, to be called inside a gradient tape; it reads
      the weights and the masks (`prune.pruned_weights`) when called.
    """
    groups = groups or channel_groups(model)
    layers = _layers_by_name(model)
    masks = _masks_by_weight(model)
    num = len(groups.groups)
    parts = {}  # (layer, weight, axis) -> segment id per position (num: not in a group)
    for g in groups.groups:
        for s in g.slices:
            if s.masked:
                var = getattr(layers[s.layer], s.weight)
                key = (s.layer, s.weight, s.axis % len(var.shape))
                ids = parts.setdefault(key, np.full(var.shape[key[2]], num, np.int32))
                ids[list(s.indices)] = g.index
    terms = []
    for (lname, wname, axis), ids in parts.items():
        var = getattr(layers[lname], wname)
        reduce_axes = tuple(a for a in range(len(var.shape)) if a != axis)
        terms.append((var, masks.get(id(var)), reduce_axes, keras.ops.convert_to_tensor(ids)))
    weights = np.sqrt(np.array([g.size for g in groups.groups] + [0], np.float32))
    total = float(sum(g.size for g in groups.groups)) or 1.0

    def term():
        energy = 0.0
        for var, mask, axes, ids in terms:
            w = var.value if mask is None else var.value * keras.ops.cast(mask.value, var.dtype)
            per_position = keras.ops.sum(keras.ops.square(keras.ops.cast(w, "float32")), axes)
            energy = energy + keras.ops.segment_sum(per_position, ids, num_segments=num + 1)
        # sqrt has an infinite slope at 0: a cut group (all zero) gets no gradient.
        safe = keras.ops.where(energy > 0, energy, 1.0)
        norms = keras.ops.where(energy > 0, keras.ops.sqrt(safe), 0.0)
        return keras.ops.sum(norms * weights) / total

    return term
