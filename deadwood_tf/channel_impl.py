"""The arithmetic of channel pruning, as pure NumPy functions.

Nothing here touches Keras: `channel_groups` turns a model into groups and
per-layer channel maps; these functions score groups, count MACs and choose
which whole groups to cut. Tests call them directly.

Tie rule: among equal scores the group that comes first (the order of
`channel_groups`) is cut first, so every cut is deterministic.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

UNITS = ("macs", "channels")
# Channel cuts keep widths that are multiples of this by default: SIMD kernels
# compute output channels in tiles of 8 or 16 (see `_aligned_cut`).
DEFAULT_ROUND_TO = 8
NORMALIZE = ("layer", "size", "macs", "none")


def check_fraction(value, name: str) -> float:
    """`value` as a float in [0, 1), or a ValueError naming `name`."""
    ok = (isinstance(value, (int, float, np.integer, np.floating))
          and not isinstance(value, bool) and 0.0 <= float(value) < 1.0)
    if not ok:
        raise ValueError(f"Invalid value for argument `{name}`: expected a float in [0, 1). "
                         f"Received: {name}={value!r}")
    return float(value)


def check_choice(value, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"Invalid value for argument `{name}`: expected one of "
                         f"{tuple(choices)}. Received: {name}={value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class MacTables:
    """Per kernel layer l and group g: `in_counts[l, g]` / `out_counts[l, g]` input /
    output channels of l in g; `fixed_in[l]` / `fixed_out[l]` channels never
    pruned; `factor[l]` MACs per (input, output) channel pair, or per output
    channel where `depthwise[l]`."""

    in_counts: np.ndarray
    out_counts: np.ndarray
    fixed_in: np.ndarray
    fixed_out: np.ndarray
    factor: np.ndarray
    depthwise: np.ndarray


def mac_tables(in_groups, out_groups, factors, depthwise, num_groups: int) -> MacTables:
    """Builds `MacTables` from per-layer arrays of group ids (-1: never pruned)."""
    n = len(in_groups)
    tables = [np.zeros((n, num_groups), np.int64) for _ in range(2)]
    fixed = [np.zeros(n, np.int64) for _ in range(2)]
    for l, maps in enumerate(zip(in_groups, out_groups)):
        for side, ids in enumerate(maps):
            ids = np.asarray(ids, np.int64)
            fixed[side][l] = int(np.sum(ids < 0))
            np.add.at(tables[side][l], ids[ids >= 0], 1)
    return MacTables(tables[0], tables[1], fixed[0], fixed[1],
                     np.asarray(factors, np.int64), np.asarray(depthwise, bool))


def _layer_channels(t: MacTables, keep: np.ndarray):
    k = keep.astype(np.int64)
    return t.fixed_in + t.in_counts @ k, t.fixed_out + t.out_counts @ k


def macs(t: MacTables, keep: np.ndarray) -> int:
    """Total MACs of the kernel layers when the groups with `keep[g]` remain."""
    n_in, n_out = _layer_channels(t, np.asarray(keep, bool))
    per = np.where(t.depthwise, t.factor * n_out, t.factor * n_in * n_out)
    return int(per.sum())


def group_scores(energies, sizes, group_macs, normalize: str = "size") -> np.ndarray:
    """A group's score: its squared L2 norm (`energies`) divided by its number of
    weights ("size": the mean square, so wide and narrow groups compare; "layer"
    starts from it, see `relative_to_family`), by the MACs it costs ("macs":
    importance per MAC saved), or not at all ("none")."""
    check_choice(normalize, "normalize", NORMALIZE)
    energies = np.asarray(energies, np.float64)
    if normalize == "none":
        return energies
    denom = np.asarray(group_macs if normalize == "macs" else sizes, np.float64)
    return energies / np.maximum(denom, 1.0)


def relative_to_family(scores, families, live) -> np.ndarray:
    """`scores` divided by the mean score of the live groups of the same family
    (groups whose channels come from the same producer layers): a group is
    ranked by how it compares with its own layer's channels (Torch-Pruning's
    "mean" normalizer), so that layers whose weights are smaller overall (deeper,
    wider fan-in) are not emptied first."""
    scores = np.asarray(scores, np.float64)
    out = scores.copy()
    families = np.asarray(families)
    for f in np.unique(families):
        members = (families == f) & live
        mean = scores[members].mean() if members.any() else 0.0
        out[families == f] = scores[families == f] / mean if mean > 0 else 0.0
    return out


def check_multiple(value, name: str = "round_to") -> int:
    """`value` as an int >= 1, or a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Invalid value for argument `{name}`: expected an int >= 1. "
                         f"Received: {name}={value!r}")
    return int(value)


def check_round_to(value, pattern, name: str = "round_to") -> int:
    """`value` as an int >= 1 that may differ from 1 only with `pattern="channel"`,
    or a ValueError naming `name`. None: `DEFAULT_ROUND_TO` for channel cuts, 1
    for the others."""
    if value is None:
        return DEFAULT_ROUND_TO if pattern == "channel" else 1
    value = check_multiple(value, name)
    if value != 1 and pattern != "channel":
        raise ValueError(f"Invalid value for `{name}`: it aligns channel cuts "
                         f"(pattern='channel') only. Received: {name}={value!r} with "
                         f"pattern={pattern!r}")
    return value


def groups_to_cut(scores, already_cut, target: float, tables: MacTables,
                  unit: str = "macs", min_channels: int = 1, multiple: int = 1) -> np.ndarray:
    """The groups to cut: those `already_cut`, then live groups by increasing score
    until `target` of the MACs (`unit="macs"`) or of the groups ("channels") is
    removed. A group is skipped when cutting it would leave a kernel layer with
    fewer than `min_channels` output channels (layer collapse). With `multiple`
    > 1 the cut goes in aligned blocks instead (`_aligned_cut`): every producer
    keeps a multiple of `multiple` output channels, or its full width. Returns
    a bool array, True for cut."""
    target = check_fraction(target, "target")
    check_choice(unit, "unit", UNITS)
    multiple = check_multiple(multiple)
    if multiple > 1:
        return _aligned_cut(np.asarray(scores, np.float64), np.asarray(already_cut, bool),
                            target, tables, unit, max(int(min_channels), multiple), multiple)
    scores = np.asarray(scores, np.float64)
    cut = np.asarray(already_cut, bool).copy()
    g = len(scores)
    n_in, n_out = _layer_channels(tables, ~cut)
    n_in, n_out = n_in.astype(np.float64), n_out.astype(np.float64)
    f = tables.factor.astype(np.float64)

    def total(n_in, n_out):
        return float(np.sum(np.where(tables.depthwise, f * n_out, f * n_in * n_out)))

    dense = total(*[x.astype(np.float64) for x in
                    _layer_channels(tables, np.ones(g, bool))])
    goal = (target * dense) if unit == "macs" else round(target * g)
    done = (dense - total(n_in, n_out)) if unit == "macs" else int(cut.sum())
    order = np.argsort(scores, kind="stable")
    for i in order:
        if done >= goal - 1e-9:
            break
        if cut[i]:
            continue
        new_out = n_out - tables.out_counts[:, i]
        touched = tables.out_counts[:, i] > 0
        if np.any(new_out[touched] < min_channels):
            continue
        n_in = n_in - tables.in_counts[:, i]
        n_out = new_out
        cut[i] = True
        done = (dense - total(n_in, n_out)) if unit == "macs" else int(cut.sum())
    return cut


def _aligned_cut(scores, already_cut, target, tables, unit, floor, multiple):
    """`groups_to_cut` in blocks: the groups of one family (same producer
    layers) go lowest score first, from its current width down to the next
    lower multiple of `multiple` (12 -> 8 -> ...; never below `floor`); the
    block with the lowest mean score goes next, until `target` is reached (the
    last block may pass it by up to `multiple` channels of one family).

    SIMD kernels compute output channels in tiles (XNNPack's float and int8
    convolutions on x86: 16 or 8 wide), so a layer cut from 24 to 18 channels
    costs about as much time as at 24: aligned widths are what make a cut fast."""
    cut = already_cut.copy()
    g = len(scores)
    f = tables.factor.astype(np.float64)

    def total(keep):
        n_in, n_out = [x.astype(np.float64) for x in _layer_channels(tables, keep)]
        return float(np.sum(np.where(tables.depthwise, f * n_out, f * n_in * n_out)))

    dense = total(np.ones(g, bool))
    goal = (target * dense) if unit == "macs" else round(target * g)
    producers = [tuple(np.nonzero(tables.out_counts[:, i])[0]) for i in range(g)]
    families = {}
    for i, key in enumerate(producers):
        families.setdefault(key, []).append(i)

    def next_block(members, n_out):
        live = sorted((i for i in members if not cut[i]), key=lambda i: (scores[i], i))
        if not producers[members[0]]:
            return None
        width = int(n_out[producers[members[0]][0]])
        lower = multiple * ((width - 1) // multiple)
        n = width - lower
        if lower < floor or n > len(live):
            return None
        return live[:n]

    while True:
        done = (dense - total(~cut)) if unit == "macs" else int(cut.sum())
        if done >= goal - 1e-9:
            break
        n_out = _layer_channels(tables, ~cut)[1]
        blocks = [b for b in (next_block(m, n_out) for m in families.values()) if b]
        if not blocks:
            break
        best = min(blocks, key=lambda b: (float(np.mean(scores[b])), b[0]))
        cut[best] = True
    return cut


def round_kept(keep: np.ndarray, producers: Sequence[np.ndarray], multiple: int,
               scores=None) -> np.ndarray:
    """Restores cut groups so that every producer keeps a multiple of `multiple`
    output channels, or all of them (its never-pruned channels count as kept; `producers[l]`:
    the group id of each output channel, -1 for never pruned). The restored
    groups are those with the highest `scores` (default: the first ones). A
    restored group is a zero channel: exact, only wider."""
    check_multiple(multiple)
    keep = np.asarray(keep, bool).copy()
    prio = np.zeros(len(keep)) if scores is None else -np.asarray(scores, np.float64)
    for ids in producers:
        ids = np.asarray(ids)
        for _ in range(len(ids)):
            kept = int(np.sum((ids < 0) | keep[np.maximum(ids, 0)] & (ids >= 0)))
            short = (-kept) % multiple
            cand = [int(x) for x in dict.fromkeys(ids[ids >= 0].tolist()) if not keep[x]]
            if not short or not cand:
                break
            cand.sort(key=lambda x: (prio[x], x))
            keep[cand[0]] = True
    return keep
