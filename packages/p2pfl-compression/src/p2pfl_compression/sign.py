"""``sign``: one bit per entry plus one scale per tensor (signSGD with error feedback).

Each tensor ``x`` (after adding its error-feedback residual) is sent as the bits
``x >= 0`` packed with ``numpy.packbits`` and the scale ``mean |x|``; it decodes to
``±mean|x|`` (Karimireddy et al., 2019, "Error feedback fixes SignSGD"). The residual
``x - x̂`` is added to the tensor's next encode. A zero tensor decodes exactly to zeros.
Tensors too small to shrink (a packed tensor plus its scale must be smaller) go whole.
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
    check_array,
    tensor_header,
    to_work,
)


class Sign(TensorCodec):
    """1-bit sign compression with a per-tensor scale ``mean |x|``.

    Args:
        error_feedback: add what was not sent to the next encode of the same tensor. Default True.
        limits: decode limits.
    """

    name = "sign"
    delta = True

    def __init__(self, error_feedback: bool = True, limits: DecodeLimits | Mapping[str, int] | None = None) -> None:
        super().__init__(limits)
        self.feedback = ErrorFeedback(error_feedback)

    def reset(self) -> None:
        """Forget the error-feedback residuals."""
        self.feedback.reset()

    def encode_tensor(self, name: str, array: np.ndarray) -> np.ndarray | tuple[dict[str, np.ndarray], dict[str, Any]]:
        flat = self.feedback.add(name, to_work(array).reshape(-1))
        scale = np.asarray(np.abs(flat).mean(dtype=np.float64), dtype=flat.dtype)
        bits = np.packbits(flat >= 0)
        if bits.nbytes + scale.nbytes >= array.nbytes:
            sent = flat.astype(array.dtype)
            self.feedback.store(name, flat, sent.astype(flat.dtype))
            return sent.reshape(array.shape)
        decoded = _unpack(bits, scale, flat.size, array.dtype)
        self.feedback.store(name, flat, decoded.astype(flat.dtype))
        return {".signs": bits, ".scale": scale}, {"dtype": array.dtype.name, "shape": list(array.shape)}

    def suffixes(self, entry: dict[str, Any], what: str) -> tuple[str, ...]:
        return (".signs", ".scale")

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
        bits = check_array(parts[".signs"], what, ndim=1, kind="u8")
        scale = check_array(parts[".scale"], what, ndim=0, kind="f")
        if bits.size != (size + 7) // 8:
            raise CodecError(f"{what}: {bits.size} sign bytes for {size} entries")
        if not np.isfinite(scale.astype(np.float64)) or scale.astype(np.float64) < 0:
            raise CodecError(f"{what}: scale must be finite and >= 0")
        return _unpack(bits, scale, size, dtype).reshape(shape)


def _unpack(bits: np.ndarray, scale: np.ndarray, size: int, dtype: np.dtype[Any]) -> np.ndarray:
    signs = np.unpackbits(bits, count=size).astype(np.float64) * 2 - 1
    return (signs * float(scale)).astype(dtype)
