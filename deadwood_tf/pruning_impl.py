"""The arithmetic of pruning: thresholds and masks, as pure NumPy functions.

Nothing here touches Keras: the functions take arrays of scores (usually weight
magnitudes) and return boolean keep-masks, so tests call them directly.

Tie rule: among equal scores, the weight that comes first (layers in order,
then C order inside a layer) is pruned first. That makes every cut
deterministic and exactly sized.
"""

from __future__ import annotations

import math
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


def _keep_counts(sizes: Sequence[int], min_keep) -> list[int]:
    """Per-layer number of weights that the layer-collapse guard protects."""
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


def keep_masks(
    scores: Sequence[np.ndarray],
    sparsity: float,
    scope: str = "global",
    min_keep=0,
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

    Returns:
      A list of boolean arrays shaped like `scores`, True where a weight stays.

    Raises:
      ValueError: bad `sparsity`, `scope` or `min_keep`, or a `min_keep` that
        leaves fewer prunable weights than the target asks for.
    """
    sparsity = check_sparsity(sparsity, "sparsity")
    if scope not in SCOPES:
        raise ValueError(
            f"Invalid value for argument `scope`: expected one of {SCOPES}. "
            f"Received: scope={scope!r}"
        )
    flat = [np.asarray(s, dtype=np.float64).ravel() for s in scores]
    sizes = [f.size for f in flat]
    protected_counts = _keep_counts(sizes, min_keep)
    # Candidates for pruning: everything but each layer's protected top weights.
    candidates = []
    for f, keep in zip(flat, protected_counts):
        cand = np.ones(f.size, dtype=bool)
        if keep:
            # Stable sort of the negated scores: among ties, the later weight is protected.
            top = np.argsort(-f[::-1], kind="stable")[:keep]
            cand[f.size - 1 - top] = False
        candidates.append(cand)

    pruned = [np.zeros(f.size, dtype=bool) for f in flat]
    if scope == "global":
        total = sum(sizes)
        k = num_to_prune(sparsity, total)
        available = sum(int(c.sum()) for c in candidates)
        if k > available:
            raise ValueError(
                f"Invalid value for argument `min_keep`: it protects "
                f"{total - available} of {total} weights, so pruning "
                f"{k} (sparsity={sparsity}) is impossible. Received: min_keep={min_keep!r}"
            )
        all_scores = np.concatenate(flat) if flat else np.zeros(0)
        all_cand = np.concatenate(candidates) if candidates else np.zeros(0, bool)
        order = np.flatnonzero(all_cand)
        chosen = order[np.argsort(all_scores[order], kind="stable")[:k]]
        flags = np.zeros(total, dtype=bool)
        flags[chosen] = True
        offsets = np.cumsum([0] + sizes)
        pruned = [flags[offsets[i] : offsets[i + 1]] for i in range(len(flat))]
    else:
        for i, (f, cand) in enumerate(zip(flat, candidates)):
            k = min(num_to_prune(sparsity, f.size), int(cand.sum()))
            idx = np.flatnonzero(cand)
            pruned[i][idx[np.argsort(f[idx], kind="stable")[:k]]] = True
    return [~p.reshape(np.shape(s)) for p, s in zip(pruned, scores)]
