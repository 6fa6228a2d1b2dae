"""``topk`` and ``randomk``: send a subset of each tensor's entries, with error feedback.

Both are update codecs (``delta = True``). With error feedback, what a tensor did not send is
kept by the codec instance (one per node) and added to the same tensor's next input, so
every coordinate is eventually transmitted (Stich et al., 2018; Karimireddy et al., 2019).

* ``topk`` sends the ``k`` entries of largest magnitude (sign ignored when choosing) as
  values plus int32 (int64 for tensors of 2^31 entries or more) flat indices.
* ``randomk`` sends ``k`` entries chosen at random; the indices are not sent: the receiver
  regenerates them from the seed in the metadata, with PCG64 raw output (a stream numpy
  keeps stable across versions) and a selection that does not depend on numpy's sampling
  routines.

``k`` is per tensor: a float in (0, 1] is a fraction of its entries (rounded, at least one),
an integer >= 1 a count. A tensor for which the sparse form would not be smaller is sent
whole.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from p2pfl.compression import CodecError
from p2pfl_compression._common import (
    DecodeBudget,
    DecodeLimits,
    ErrorFeedback,
    TensorCodec,
    as_int,
    check_array,
    float_param,
    get,
    tensor_header,
    to_work,
)

INT32_MAX = 2**31 - 1


def resolve_k(k: Any) -> int | float:
    """Validate ``k``: an int >= 1 (count) or a float in (0, 1] (fraction)."""
    if isinstance(k, bool):
        raise ValueError(f"k must be a count (integer >= 1) or a fraction in (0, 1], got {k!r}")
    if isinstance(k, int):
        if k < 1:
            raise ValueError(f"k as a count must be >= 1, got {k}")
        return k
    fraction = float_param(k, "k (a fraction; use an integer for a count)", 0.0, 1.0, lo_open=True)
    return fraction


def count_for(k: int | float, size: int) -> int:
    """How many of ``size`` entries ``k`` keeps."""
    if isinstance(k, int):
        return min(k, size)
    return min(size, max(1, round(k * size)))


def index_dtype(size: int) -> np.dtype[Any]:
    return np.dtype(np.int32) if size <= INT32_MAX else np.dtype(np.int64)


class _Sparse(TensorCodec):
    delta = True

    def __init__(self, k: int | float, error_feedback: bool, limits: DecodeLimits | Mapping[str, int] | None) -> None:
        super().__init__(limits)
        self.k = resolve_k(k)
        self.feedback = ErrorFeedback(error_feedback)

    def reset(self) -> None:
        """Forget the error-feedback residuals (e.g. when the model changes)."""
        self.feedback.reset()

    def _dense(self, name: str, array: np.ndarray, accumulated: np.ndarray) -> np.ndarray:
        """Send a tensor whole; only the rounding to its dtype is left as residual."""
        sent = accumulated.astype(array.dtype)
        self.feedback.store(name, accumulated, sent.astype(accumulated.dtype))
        return sent.reshape(array.shape)

    def _sparse(
        self, name: str, array: np.ndarray, accumulated: np.ndarray, idx: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Values at ``idx`` (in the tensor's dtype); the rest, and the rounding, become the residual."""
        values = accumulated[idx].astype(array.dtype)
        if self.feedback.enabled:
            residual = accumulated.copy()
            residual[idx] -= values.astype(accumulated.dtype)
            self.feedback.keep(name, residual)
        return values, idx


class TopK(_Sparse):
    """Keep the ``k`` largest-magnitude entries of each tensor.

    Args:
        k: fraction in (0, 1] or count >= 1, per tensor. Default 0.01.
        error_feedback: add what was not sent to the next encode of the same tensor. Default True.
        limits: decode limits.
    """

    name = "topk"

    def __init__(
        self, k: int | float = 0.01, error_feedback: bool = True, limits: DecodeLimits | Mapping[str, int] | None = None
    ) -> None:
        super().__init__(k, error_feedback, limits)

    def encode_tensor(self, name: str, array: np.ndarray) -> np.ndarray | tuple[dict[str, np.ndarray], dict[str, Any]]:
        flat = self.feedback.add(name, to_work(array).reshape(-1))
        size = flat.size
        count = count_for(self.k, size)
        idx_dtype = index_dtype(size)
        if count * (array.dtype.itemsize + idx_dtype.itemsize) >= array.nbytes:
            return self._dense(name, array, flat)
        idx = np.sort(np.argpartition(np.abs(flat), size - count)[size - count :]).astype(idx_dtype)
        values, idx = self._sparse(name, array, flat, idx)
        entry = {"dtype": array.dtype.name, "shape": list(array.shape)}
        return {".values": values, ".indices": idx}, entry

    def suffixes(self, entry: dict[str, Any], what: str) -> tuple[str, ...]:
        return (".values", ".indices")

    def decode_tensor(
        self,
        parts: dict[str, np.ndarray],
        entry: dict[str, Any],
        what: str,
        budget: DecodeBudget,
        context: dict[str, Any],
    ) -> np.ndarray:
        dtype, shape = tensor_header(entry, what, budget)
        size = math.prod(shape)
        values = check_array(parts[".values"], what, ndim=1, kind="f")
        idx = check_array(parts[".indices"], what, ndim=1, kind="i")
        if idx.shape != values.shape or idx.size > size:
            raise CodecError(f"{what}: {values.size} values and {idx.size} indices for {size} entries")
        if idx.size and (idx[0] < 0 or idx[-1] >= size or (np.diff(idx) <= 0).any()):
            raise CodecError(f"{what}: indices must be strictly increasing within [0, {size})")
        dense = np.zeros(size, dtype=dtype)
        dense[idx] = values.astype(dtype)
        return dense.reshape(shape)


class RandomK(_Sparse):
    """Keep ``k`` entries of each tensor chosen at random (a fresh choice at every encode).

    Args:
        k: fraction in (0, 1] or count >= 1, per tensor. Default 0.01.
        seed: seed of this node's choices (``None``: fresh entropy). Give each node its own.
        error_feedback: add what was not sent to the next encode of the same tensor. Default True.
        rescale: multiply the kept entries by ``size / k`` (unbiased estimate; meant for use
            without error feedback). Default False.
        limits: decode limits.
    """

    name = "randomk"

    def __init__(
        self,
        k: int | float = 0.01,
        seed: int | None = None,
        error_feedback: bool = True,
        rescale: bool = False,
        limits: DecodeLimits | Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(k, error_feedback, limits)
        self.rescale = bool(rescale)
        self._rng = np.random.default_rng(seed)
        self._seed = 0
        self._stream = 0

    def _encode(self, arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._seed = int(self._rng.integers(0, 2**63 - 1))  # one seed per payload, in its metadata
        self._stream = 0
        return super()._encode(arrays)

    def header(self) -> dict[str, Any]:
        return {"seed": self._seed}

    def check_header(self, meta: dict[str, Any]) -> dict[str, Any]:
        return {"seed": as_int(get(meta, "seed", "codec 'randomk'"), "codec 'randomk' seed")}

    def encode_tensor(self, name: str, array: np.ndarray) -> np.ndarray | tuple[dict[str, np.ndarray], dict[str, Any]]:
        flat = self.feedback.add(name, to_work(array).reshape(-1))
        count = count_for(self.k, flat.size)
        if count >= flat.size:
            return self._dense(name, array, flat)
        stream, self._stream = self._stream, self._stream + 1
        idx = random_indices(self._seed, stream, flat.size, count)
        if self.rescale:
            flat = flat.copy()
            flat[idx] *= flat.size / count
        values, _ = self._sparse(name, array, flat, idx)
        entry = {"dtype": array.dtype.name, "shape": list(array.shape), "stream": stream, "count": count}
        return {".values": values}, entry

    def suffixes(self, entry: dict[str, Any], what: str) -> tuple[str, ...]:
        return (".values",)

    def decode_tensor(
        self,
        parts: dict[str, np.ndarray],
        entry: dict[str, Any],
        what: str,
        budget: DecodeBudget,
        context: dict[str, Any],
    ) -> np.ndarray:
        dtype, shape = tensor_header(entry, what, budget)
        size = math.prod(shape)
        count = as_int(get(entry, "count", what), f"{what} count", 1, max(size - 1, 1))
        stream = as_int(get(entry, "stream", what), f"{what} stream", 0, 2**32)
        values = check_array(parts[".values"], what, ndim=1, kind="f")
        if values.size != count or count >= size:
            raise CodecError(f"{what}: {values.size} values, metadata says {count} of {size}")
        budget.claim(what, (size,), np.dtype(np.uint64))  # the selection keys
        dense = np.zeros(size, dtype=dtype)
        dense[random_indices(context["seed"], stream, size, count)] = values.astype(dtype)
        return dense.reshape(shape)


def random_indices(seed: int, stream: int, size: int, count: int) -> np.ndarray:
    """``count`` distinct sorted indices below ``size``, a pure function of (seed, stream).

    Every entry gets a 64-bit key from PCG64's raw stream; the ``count`` smallest keys win.
    Only the bit generator's raw output is used, which numpy keeps stable across versions.
    """
    bits = np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(stream,)))
    keys = bits.random_raw(size)
    return np.sort(np.argpartition(keys, count - 1)[:count]).astype(index_dtype(size))
