"""``lowrank``: truncated SVD of each matrix-shaped update.

A tensor with ``ndim >= 2`` is viewed as a matrix ``X`` of shape ``(shape[0], -1)`` (a
convolution kernel ``(out, in, kh, kw)`` becomes ``(out, in*kh*kw)``). With ``X = U S Vᵀ``,
the codec sends ``U_r S_r`` and ``V_rᵀ`` (float32; float64 for float64 tensors), where ``r``
is the fixed ``rank`` or the smallest rank whose singular values hold an ``energy`` share
of ``‖X‖_F²``. By Eckart–Young the error is ``‖X − X̂‖_F = sqrt(Σ_{i>r} σ_i²)``, hence at
most ``sqrt(1 − energy) · ‖X‖_F`` (plus float rounding). 0-d and 1-d tensors, and matrices
whose factors would not be smaller than the matrix, are sent whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from p2pfl.compression import CodecError
from p2pfl_compression._common import (
    DecodeBudget,
    DecodeLimits,
    ErrorFeedback,
    TensorCodec,
    check_array,
    float_param,
    tensor_header,
    to_work,
)


class LowRank(TensorCodec):
    """Truncated SVD by fixed rank or by energy threshold.

    Args:
        rank: keep this many singular values (int >= 1). Exclusive with ``energy``.
        energy: keep the smallest rank holding this share of the squared Frobenius norm,
            in (0, 1]. Default 0.9 when ``rank`` is not given.
        error_feedback: add what was not sent to the next encode of the same tensor. Default False.
        limits: decode limits.
    """

    name = "lowrank"
    delta = True

    def __init__(
        self,
        rank: int | None = None,
        energy: float | None = None,
        error_feedback: bool = False,
        limits: DecodeLimits | Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(limits)
        if rank is not None and energy is not None:
            raise ValueError("give either rank or energy, not both")
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
            raise ValueError(f"rank must be an integer >= 1, got {rank!r}")
        self.rank = rank
        self.energy = None if rank is not None else float_param(0.9 if energy is None else energy, "energy", 0, 1, True)
        self.feedback = ErrorFeedback(error_feedback)

    def reset(self) -> None:
        """Forget the error-feedback residuals."""
        self.feedback.reset()

    def encode_tensor(self, name: str, array: np.ndarray) -> np.ndarray | tuple[dict[str, np.ndarray], dict[str, Any]]:
        if array.ndim < 2:
            return array
        rows = array.shape[0]
        matrix = self.feedback.add(name, to_work(array).reshape(rows, -1))
        try:
            u, s, vt = np.linalg.svd(matrix, full_matrices=False)
        except np.linalg.LinAlgError as exc:
            raise CodecError(f"lowrank: SVD of tensor {name!r} failed ({exc}); does it hold NaN or inf?") from None
        r = self._choose_rank(s)
        cols = matrix.shape[1]
        if r * (rows + cols) * matrix.dtype.itemsize >= array.nbytes:
            sent = matrix.astype(array.dtype)
            self.feedback.store(name, matrix, sent.astype(matrix.dtype))
            return sent.reshape(array.shape)
        left, right = u[:, :r] * s[:r], vt[:r]
        self.feedback.store(name, matrix, (left @ right).astype(array.dtype).astype(matrix.dtype))
        return {".u": left, ".v": right}, {"dtype": array.dtype.name, "shape": list(array.shape)}

    def _choose_rank(self, s: np.ndarray) -> int:
        if self.rank is not None:
            return min(self.rank, s.size)
        assert self.energy is not None
        power = np.cumsum(s.astype(np.float64) ** 2)
        if power.size == 0 or power[-1] == 0:
            return 0
        # smallest r with power[r-1] >= energy * total (searchsorted is exact on the cumulative sum)
        return min(int(np.searchsorted(power, self.energy * power[-1], side="left")) + 1, s.size)

    def suffixes(self, entry: dict[str, Any], what: str) -> tuple[str, ...]:
        return (".u", ".v")

    def decode_tensor(
        self,
        parts: dict[str, np.ndarray],
        entry: dict[str, Any],
        what: str,
        budget: DecodeBudget,
        context: dict[str, Any],
    ) -> np.ndarray:
        dtype, shape = tensor_header(entry, what, budget)
        if len(shape) < 2 or shape[0] == 0:
            raise CodecError(f"{what}: shape {list(shape)} is not a non-empty matrix")
        rows = shape[0]
        cols = int(np.prod(shape[1:], dtype=np.int64))
        left = check_array(parts[".u"], what, ndim=2, kind="f")
        right = check_array(parts[".v"], what, ndim=2, kind="f")
        r = left.shape[1]
        if left.shape[0] != rows or right.shape != (r, cols) or r > min(rows, cols):
            raise CodecError(f"{what}: factors {left.shape} x {right.shape} do not make shape {list(shape)}")
        budget.claim(what, (rows, cols), np.dtype(np.float64))  # the product in working precision
        work = np.float64 if np.float64 in (left.dtype, right.dtype) else np.float32
        return (left.astype(work) @ right.astype(work)).reshape(shape).astype(dtype)
