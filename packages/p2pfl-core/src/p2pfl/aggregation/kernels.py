"""Numeric kernels of aggregation: cache-blocked, order-preserving weighted means.

Every sum over updates is an explicit element-wise loop in the updates' canonical order
(never a BLAS reduction), so results are bitwise reproducible on every node: BLAS kernels
may change their summation order with the thread count or the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: elements per block: two float64 buffers of this size stay in a core's L2 cache, so each
#: input is read from memory once and no model-sized temporaries are created.
BLOCK = 1 << 14


def _acc_dtype(dtype: np.dtype) -> type[np.floating] | type[np.complexfloating]:
    return np.complex128 if dtype.kind == "c" else np.float64


def weighted_sum64(arrays: Sequence[np.ndarray], coefficients: Sequence[float]) -> np.ndarray:
    """``sum(c_i * float64(a_i))`` as a flat float64 (complex128) array, accumulated in order.

    Per element this performs exactly the operations of ``acc += a.astype(f64) * c`` over
    the arrays in order (a plain float64 loop would), so results are bitwise
    equal to it, but block by block: inputs are read once and nothing model-sized is
    allocated besides the result.
    """
    acc_dtype = _acc_dtype(arrays[0].dtype)
    flats = [np.ascontiguousarray(a).reshape(-1) for a in arrays]
    size = flats[0].size
    out = np.zeros(size, dtype=acc_dtype)
    tmp = np.empty(min(size, BLOCK), dtype=acc_dtype)
    for start in range(0, size, BLOCK):
        stop = min(start + BLOCK, size)
        acc = out[start:stop]
        t = tmp[: stop - start]
        for flat, coefficient in zip(flats, coefficients):
            # dtype= forces the float64 loop: under NEP 50 a float32 input times a Python
            # float would otherwise be computed in float32.
            np.multiply(flat[start:stop], coefficient, out=t, dtype=acc_dtype)
            np.add(acc, t, out=acc)
    return out


def weighted_mean64(arrays: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Weighted mean in float64 (complex128), shaped like the inputs, not cast back."""
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("weights must have a positive sum")
    flat = weighted_sum64(arrays, [float(w) / total for w in weights])
    return flat.reshape(arrays[0].shape)


def weighted_mean(arrays: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Weighted mean cast back to the inputs' dtype; integers are rounded, not truncated.

    Float16/bfloat16 inputs with huge weights cannot overflow: nothing is summed in their
    own precision. Integer tensors (e.g. batch-norm counters) are rounded, not truncated.
    """
    return cast_like(weighted_mean64(arrays, weights), arrays[0])


def cast_like(values: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``values`` (float64) reshaped and cast to ``like``'s shape and dtype (integers rounded)."""
    values = np.asarray(values).reshape(like.shape)
    if like.dtype.kind in "iub":
        values = np.asarray(np.rint(values))  # np.rint of a 0-d array is a scalar, not an array
    return values.astype(like.dtype)
