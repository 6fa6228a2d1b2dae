"""Numeric kernels shared by the aggregators: cache-blocked weighted means and row stacks.

Every sum over updates is an explicit, element-wise loop in the updates' canonical order
(never a BLAS reduction), so results are bitwise reproducible on every node: BLAS kernels
may change their summation order with the thread count or the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

# core's kernels, re-exported: this module is the aggregators' numeric toolbox
from p2pfl.aggregation.kernels import BLOCK, cast_like, weighted_mean, weighted_mean64, weighted_sum64

__all__ = [
    "BLOCK",
    "cast_like",
    "columnwise",
    "squared_distances",
    "squared_norms_to",
    "weighted_mean",
    "weighted_mean64",
    "weighted_sum64",
]


def columnwise(arrays: Sequence[np.ndarray], fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``fn`` applied to the stacked arrays, one column block at a time; a flat float64 result.

    ``fn`` maps an ``(n, k)`` float64 block (row ``i``: a slice of ``arrays[i]``) to its ``k``
    column results. Blocks keep sorts and selections in cache, and no ``(n, size)`` float64
    copy of the inputs is ever made.
    """
    flats = [np.ascontiguousarray(a).reshape(-1) for a in arrays]
    size = flats[0].size
    out = np.empty(size, dtype=np.float64)
    block = np.empty((len(flats), min(size, BLOCK)), dtype=np.float64)
    for start in range(0, size, BLOCK):
        stop = min(start + BLOCK, size)
        b = block if stop - start == block.shape[1] else np.empty((len(flats), stop - start))
        for row, flat in zip(b, flats):
            row[...] = flat[start:stop]
        out[start:stop] = fn(b)
    return out


def squared_distances(rows: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances between the rows, as an ``(n, n)`` matrix.

    Computed from the differences (not from a Gram matrix), so equal rows are at distance
    exactly 0 and ties between updates are exact; column block by column block, so the
    temporaries stay in cache.
    """
    n, size = rows.shape
    out = np.zeros((n, n), dtype=np.float64)
    for start in range(0, size, BLOCK):
        block = rows[:, start : start + BLOCK]
        for i in range(n - 1):
            diff = block[i + 1 :] - block[i]
            d = np.einsum("ij,ij->i", diff, diff)
            out[i, i + 1 :] += d
            out[i + 1 :, i] += d
    return out


def squared_norms_to(rows: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance of each row to ``point`` (a flat vector of the same size)."""
    out = np.zeros(rows.shape[0], dtype=np.float64)
    for start in range(0, rows.shape[1], BLOCK):
        diff = rows[:, start : start + BLOCK] - point[start : start + BLOCK]
        out += np.einsum("ij,ij->i", diff, diff)
    return out
