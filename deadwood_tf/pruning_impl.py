"""The arithmetic of pruning: thresholds and masks, as pure NumPy functions.

Nothing here touches Keras: the functions take arrays of scores (usually weight
magnitudes) and return boolean keep-masks, so tests call them directly.

Tie rule: among equal scores, the weight that comes first (layers in order,
then C order inside a layer) is pruned first. That makes every cut
deterministic and exactly sized.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np

SCOPES = ("global", "layer")


def check_sparsity(value, name: str = "target_sparsity") -> float:
    """Returns `value` as a float in [0, 1) or raises a ValueError naming `name`."""
    ok = (isinstance(value, (int, float, np.integer, np.floating))
          and not isinstance(value, bool) and 0.0 <= float(value) < 1.0)
    if not ok:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a float in [0, 1). "
            f"Received: {name}={value!r}"
        )
    return float(value)


def keep_counts(sizes: Sequence[int], min_keep) -> list[int]:
    """Per layer, the number of weights that the layer-collapse guard `min_keep`
    protects (`min_keep`: an int >= 0 of weights, or a fraction in [0, 1] of each
    layer); a ValueError names `min_keep` otherwise.

    >>> keep_counts([10, 3], 5), keep_counts([10, 3], 0.5)
    ([5, 3], [5, 2])
    """
    if isinstance(min_keep, bool) or min_keep is None:
        min_keep = 0
    if isinstance(min_keep, (int, np.integer)) and min_keep >= 0:
        return [min(int(min_keep), n) for n in sizes]
    if isinstance(min_keep, (float, np.floating)) and 0.0 <= min_keep <= 1.0:
        return [min(n, math.ceil(float(min_keep) * n)) for n in sizes]
    raise ValueError(
        "Invalid value for argument `min_keep`: expected a non-negative int "
        "(weights per layer) or a float in [0, 1] (fraction of each layer). "
        f"Received: min_keep={min_keep!r}"
    )


def num_to_prune(sparsity: float, total: int) -> int:
    """`round(sparsity * total)`, rounding halves up so the count never flickers."""
    return int(math.floor(sparsity * total + 0.5))


def check_pattern(pattern, name: str = "pattern"):
    """Normalises a sparsity pattern or raises a ValueError naming `name`.

    Accepted: None or "" (unstructured); a block `(bh, bw)` of positive ints,
    or the string "BHxBW" (e.g. "1x4"); an N:M string "N:M" with 0 < N < M
    (e.g. "2:4"); "channel" (whole channel groups, `channel_groups`). Returns
    None, `("block", bh, bw)`, `("nm", n, m)` or `("channel",)`.
    """
    def bad():
        return ValueError(
            f"Invalid value for argument `{name}`: expected None, a block (bh, bw) of "
            f"positive ints or 'BHxBW' (e.g. '1x4'), 'N:M' with 0 < N < M (e.g. '2:4'), or "
            "'channel'. "
            f"Received: {name}={pattern!r}")

    if pattern is None or pattern == "":
        return None
    if pattern == "channel":
        return ("channel",)
    if isinstance(pattern, str):
        m = re.fullmatch(r"\s*(\d+)\s*([x:])\s*(\d+)\s*", pattern)
        if not m:
            raise bad()
        a, sep, b = int(m.group(1)), m.group(2), int(m.group(3))
        if sep == ":":
            if not 0 < a < b:
                raise bad()
            return ("nm", a, b)
        pattern = (a, b)
    if isinstance(pattern, (tuple, list)) and len(pattern) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
            for v in pattern):
        return ("block", int(pattern[0]), int(pattern[1]))
    raise bad()


def matrix_view(shape) -> tuple[int, int]:
    """The 2-D view every pattern runs along: `(fan_in, outputs)`.

    The last axis of a kernel is its output axis (Dense `(in, out)`, Conv
    `(h, w, in, out)`, Depthwise `(h, w, in, multiplier)`); all other axes,
    flattened in C order, are the input axis (for a Conv kernel, consecutive
    rows are consecutive input channels at one `(h, w)` tap). A 1-D weight is
    one column.
    """
    shape = tuple(int(d) for d in shape)
    if len(shape) <= 1:
        return (shape[0] if shape else 1), 1
    return int(np.prod(shape[:-1])), shape[-1]


def _block_units(shape, bh: int, bw: int):
    """Per weight (C order) the index of its (bh, bw) block, and the number of blocks."""
    rows, cols = matrix_view(shape)
    r = np.arange(rows)[:, None] // bh
    c = np.arange(cols)[None, :] // bw
    blocks_per_row = -(-cols // bw)
    return (r * blocks_per_row + c).ravel(), (-(-rows // bh)) * blocks_per_row


def _nm_pruned(score: np.ndarray, n: int, m: int) -> np.ndarray:
    """Flat bool: the weights an N:M pattern forces out (all but the N best of each
    group of M consecutive input-axis weights per output; ties: earlier goes)."""
    rows, cols = matrix_view(score.shape)
    mat = score.reshape(rows, cols).T  # (outputs, fan_in)
    pad = (-rows) % m
    padded = np.pad(mat, ((0, 0), (0, pad)), constant_values=np.inf)
    groups = padded.reshape(cols, -1, m)
    # Rank inside each group, stable: among ties the earlier weight ranks lower.
    order = np.argsort(groups, axis=-1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(m)[None, None, :].repeat(
        groups.shape[0], 0).repeat(groups.shape[1], 1), axis=-1)
    real = np.ones_like(padded, dtype=bool)
    if pad:
        real[:, rows:] = False
    sizes = real.reshape(cols, -1, m).sum(-1, keepdims=True)
    # A short last group keeps at most n too; padding ranks last, so it never counts.
    pruned = (ranks < np.maximum(sizes - n, 0)).reshape(cols, -1)[:, :rows]
    return pruned.T.ravel()


def keep_masks(
    scores: Sequence[np.ndarray],
    sparsity: float,
    scope: str = "global",
    min_keep=0,
    pattern=None,
) -> list[np.ndarray]:
    """Boolean keep-masks that prune the lowest-scoring weights.

    Args:
      scores: one array per prunable weight; higher means more important.
        Already-pruned weights should score below every live weight (e.g. -1
        for magnitudes) so that a cut never revives them.
      sparsity: fraction in [0, 1) of weights to prune.
      scope: "global" prunes exactly `round(sparsity * P)` of all `P` weights
        under one threshold; "layer" prunes `round(sparsity * n_l)` of each
        layer's `n_l` weights.
      min_keep: guard against layer collapse: every layer keeps at least this
        many weights (int) or this fraction of its weights (float); the pruned
        total stays exact, taken from the other layers.
      pattern: the structure of what is pruned, along `matrix_view`'s
        `(fan_in, outputs)` axes (see `check_pattern`):
        None: single weights.
        `(bh, bw)`: whole blocks of `bh` consecutive input-axis weights times
        `bw` consecutive output channels, ranked by their RMS score (blocks at
        a ragged edge are smaller; RMS compares them fairly). A block holding
        an already-pruned weight (negative score) is pruned first, whole. The
        count pruned is the largest number of whole blocks not above the
        target, so it is exact when every block is full. `(1, 4)` (4 output
        channels) is what XNNPack's sparse 1x1 convolutions exploit; `(4, 1)`
        (4 inputs of one output) is TFLite's sparse fully-connected block.
        "N:M": in every group of M consecutive input-axis weights of an output
        channel at most N stay (the M-N lowest go first); then the global (or
        per-layer) rule prunes the lowest of the rest until the target is met,
        so the sparsity is at least 1 - N/M.

    Returns:
      A list of boolean arrays shaped like `scores`, True where a weight stays.

    Raises:
      ValueError: bad `sparsity`, `scope`, `min_keep` or `pattern`, or a
        `min_keep` that leaves fewer prunable weights than the target asks for.
    """
    sparsity = check_sparsity(sparsity, "sparsity")
    pattern = check_pattern(pattern)
    if pattern == ("channel",):
        raise ValueError(
            "Invalid value for argument `pattern`: 'channel' cuts whole channel groups "
            "found in the model's graph; use prune.apply_sparsity or "
            "prune.cut_channels. Received: pattern='channel'")
    if scope not in SCOPES:
        raise ValueError(
            f"Invalid value for argument `scope`: expected one of {SCOPES}. "
            f"Received: scope={scope!r}"
        )
    flat = [np.asarray(s, dtype=np.float64).ravel() for s in scores]
    protected_counts = keep_counts([f.size for f in flat], min_keep)
    forced = [np.zeros(f.size, dtype=bool) for f in flat]
    if pattern is not None and pattern[0] == "nm":
        forced = [_nm_pruned(f.reshape(np.shape(s)), pattern[1], pattern[2])
                  for f, s in zip(flat, scores)]
        flat = [np.where(fo, -1.0 - np.abs(f), f) for f, fo in zip(flat, forced)]
    units = [_units(f, np.shape(s), pattern) for f, s in zip(flat, scores)]
    candidates = [_candidates(u_score, u_size, keep)
                  for (_, u_score, u_size), keep in zip(units, protected_counts)]
    if scope == "global":
        unit_flags = _global_flags(units, candidates, flat, forced, sparsity, min_keep)
    else:
        unit_flags = []
        for (_, u_score, u_size), cand, f, fo in zip(units, candidates, flat, forced):
            k = min(max(num_to_prune(sparsity, f.size), int(fo.sum())),
                    int(u_size[cand].sum()))
            unit_flags.append(_choose(u_score, u_size, cand, k))
    pruned = [uf[u[0]] | fo for uf, u, fo in zip(unit_flags, units, forced)]
    return [~p.reshape(np.shape(s)) for p, s in zip(pruned, scores)]


def _units(flat: np.ndarray, shape, pattern):
    """What is pruned as a whole (a weight, or a block of weights) in one layer:
    `(unit index of each weight, unit scores, unit sizes)`."""
    if pattern is not None and pattern[0] == "block":
        idx, n_units = _block_units(shape, pattern[1], pattern[2])
        size = np.bincount(idx, minlength=n_units)
        rms = np.sqrt(np.bincount(idx, np.maximum(flat, 0.0) ** 2, n_units) / np.maximum(size, 1))
        dead = np.bincount(idx, flat < 0, n_units) > 0
        return idx, np.where(dead, -1.0, rms), size
    return np.arange(flat.size), flat, np.ones(flat.size, dtype=np.int64)


def _candidates(u_score, u_size, keep: int) -> np.ndarray:
    """Units that may be pruned: all but the layer's `keep` protected top weights."""
    cand = np.ones(u_score.size, dtype=bool)
    if keep:
        # Stable sort of the negated scores: among ties, the later unit is protected.
        top = u_score.size - 1 - np.argsort(-u_score[::-1], kind="stable")
        n_top = int(np.searchsorted(np.cumsum(u_size[top]), keep)) + 1
        cand[top[:n_top]] = False
    return cand


def _choose(u_scores, u_sizes, cand, k):
    """Flags on the lowest-scoring candidate units whose sizes add up to at most k."""
    order = np.flatnonzero(cand)
    order = order[np.argsort(u_scores[order], kind="stable")]
    n = int(np.searchsorted(np.cumsum(u_sizes[order]), k, side="right"))
    flags = np.zeros(u_scores.size, dtype=bool)
    flags[order[:n]] = True
    return flags


def _global_flags(units, candidates, flat, forced, sparsity, min_keep):
    """Per layer, the units pruned by one threshold over all layers."""
    total = sum(f.size for f in flat)
    k = max(num_to_prune(sparsity, total), sum(int(f.sum()) for f in forced))
    available = sum(int(u[2][c].sum()) for u, c in zip(units, candidates))
    if k > available:
        raise ValueError(
            f"Invalid value for argument `min_keep`: it protects "
            f"{total - available} of {total} weights, so pruning "
            f"{k} (sparsity={sparsity}) is impossible. Received: min_keep={min_keep!r}"
        )
    flags = _choose(np.concatenate([u[1] for u in units]) if units else np.zeros(0),
                    np.concatenate([u[2] for u in units]) if units else np.zeros(0, int),
                    np.concatenate(candidates) if candidates else np.zeros(0, bool), k)
    offsets = np.cumsum([0] + [u[1].size for u in units])
    return [flags[offsets[i]: offsets[i + 1]] for i in range(len(units))]
