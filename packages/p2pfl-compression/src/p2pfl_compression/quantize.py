"""``quantize``: float16 / bfloat16 casts and int8 / uint8 / int16 linear quantization.

Integer quantization works per *group*: the whole tensor, or each slice along axis 0
(``granularity: channel``, for tensors with at least two dimensions). Each group sends its
own statistics, stored in the tensor's own dtype (they are elements of the tensor, so this is
exact):

* symmetric: ``amax = max |x|``; ``q = round(x / amax * Q)`` in ``[-Q, Q]`` (``Q`` = 127 or
  32767; uint8 adds 128); decoded ``x̂ = (q / Q) * amax``.
* asymmetric: ``lo = min x``, ``hi = max x``; ``q = round((x - lo) / (hi - lo) * L)`` over the
  ``L + 1`` levels of the dtype; decoded ``x̂ = lo + (q / L) * (hi - lo)``.

Error bound per element: ``|x - x̂| <= step / 2`` with ``step = amax / Q`` (symmetric) or
``(hi - lo) / L`` (asymmetric), plus the rounding of ``x̂`` to the tensor's dtype (half an
ulp). Constant groups (zeros included) decode exactly: ``q / Q`` is exactly ±1 or 0, and
``hi - lo`` is exactly 0. Casts round to nearest (relative error 2^-11 for float16, 2^-8 for
bfloat16); finite values beyond the target's range saturate to its largest finite value.

A tensor is sent unchanged when quantizing it would not make it smaller (a float16 tensor
under ``int16``, a 0-d scalar whose statistics outweigh it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_dtypes
import numpy as np

from p2pfl.compression import CodecError
from p2pfl_compression._common import (
    DecodeBudget,
    DecodeLimits,
    TensorCodec,
    as_choice,
    as_dtype,
    check_array,
    choice_param,
    get,
    tensor_header,
)

#: integer dtype -> (lowest, highest) code
INT_RANGES: dict[str, tuple[int, int]] = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}
CAST_DTYPES: dict[str, np.dtype[Any]] = {"float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16)}
SCHEMES = ("symmetric", "asymmetric")
GRANULARITIES = ("tensor", "channel")
BITS_DTYPE = {8: "int8", 16: "int16"}


class Quantize(TensorCodec):
    """Quantize float tensors to a narrower dtype; each is restored to its own dtype.

    Args:
        bits: 8 (int8) or 16 (int16); ignored when ``dtype`` is given. Default 8.
        dtype: ``int8``, ``uint8``, ``int16``, ``float16`` or ``bfloat16``.
        scheme: ``symmetric`` (zero maps to zero) or ``asymmetric`` (min/max range).
        granularity: ``tensor`` or ``channel`` (one range per slice along axis 0).
        limits: decode limits (:class:`~p2pfl_compression._common.DecodeLimits` or a mapping).
    """

    name = "quantize"

    def __init__(
        self,
        bits: int | None = None,
        dtype: str | None = None,
        scheme: str = "symmetric",
        granularity: str = "tensor",
        limits: DecodeLimits | Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(limits)
        if dtype is None:
            if bits is None:
                bits = 8
            if bits not in BITS_DTYPE or isinstance(bits, bool):
                raise ValueError(f"bits must be 8 or 16, got {bits!r} (or give dtype)")
            dtype = BITS_DTYPE[bits]
        self.target = choice_param(dtype, "dtype", (*INT_RANGES, *CAST_DTYPES))
        if bits is not None and self.target in INT_RANGES and np.dtype(self.target).itemsize * 8 != bits:
            raise ValueError(f"bits={bits!r} contradicts dtype={dtype!r}")
        self.scheme = choice_param(scheme, "scheme", SCHEMES)
        self.granularity = choice_param(granularity, "granularity", GRANULARITIES)

    # ------------------------------------------------------------------ encode

    def encode_tensor(self, name: str, array: np.ndarray) -> np.ndarray | tuple[dict[str, np.ndarray], dict[str, Any]]:
        if self.target in CAST_DTYPES:
            return self._cast(array)
        return self._quantize(name, array)

    def _cast(self, array: np.ndarray) -> np.ndarray | tuple[dict[str, np.ndarray], dict[str, Any]]:
        target = CAST_DTYPES[self.target]
        if target.itemsize >= array.dtype.itemsize:
            return array
        work = array.astype(np.float64)
        big = float(ml_dtypes.finfo(target).max)
        finite = np.isfinite(work)
        work = np.where(finite, np.clip(work, -big, big), work)  # saturate, keep nan/inf as they are
        entry = {"mode": "cast", "dtype": array.dtype.name, "shape": list(array.shape)}
        return {".cast": work.astype(target)}, entry

    def _quantize(self, name: str, array: np.ndarray) -> np.ndarray | tuple[dict[str, np.ndarray], dict[str, Any]]:
        per_channel = self.granularity == "channel" and array.ndim >= 2
        groups = array.astype(np.float64).reshape(array.shape[0] if per_channel else 1, -1)
        if not np.isfinite(groups).all():
            raise CodecError(f"quantize: tensor {name!r} has NaN or infinite values; it cannot be quantized")
        lo_code, hi_code = INT_RANGES[self.target]
        if self.scheme == "symmetric":
            codes, stats = _symmetric(groups, lo_code, hi_code)
        else:
            codes, stats = _asymmetric(groups, lo_code, hi_code)
        q = codes.astype(self.target).reshape(array.shape)
        stat_arrays = {k: v.astype(array.dtype) for k, v in stats.items()}  # exact: they are elements
        if q.nbytes + sum(s.nbytes for s in stat_arrays.values()) >= array.nbytes:
            return array
        entry = {
            "mode": self.scheme,
            "dtype": array.dtype.name,
            "shape": list(array.shape),
            "qdtype": self.target,
            "channel": per_channel,
        }
        return {".q": q, **{f".{k}": v for k, v in stat_arrays.items()}}, entry

    # ------------------------------------------------------------------ decode

    def suffixes(self, entry: dict[str, Any], what: str) -> tuple[str, ...]:
        mode = as_choice(get(entry, "mode", what), what, ("cast", *SCHEMES))
        return {"cast": (".cast",), "symmetric": (".q", ".amax"), "asymmetric": (".q", ".lo", ".hi")}[mode]

    def decode_tensor(
        self,
        parts: dict[str, np.ndarray],
        entry: dict[str, Any],
        what: str,
        budget: DecodeBudget,
        context: dict[str, Any],
    ) -> np.ndarray:
        dtype, shape = tensor_header(entry, what, budget)
        if entry["mode"] == "cast":
            cast = check_array(parts[".cast"], what, kind="f")
            if cast.shape != shape:
                raise CodecError(f"{what}: cast tensor has shape {cast.shape}, expected {shape}")
            return cast.astype(dtype)
        qname = as_choice(get(entry, "qdtype", what), what, tuple(INT_RANGES))
        per_channel = get(entry, "channel", what)
        if not isinstance(per_channel, bool) or (per_channel and len(shape) < 2):
            raise CodecError(f"{what}: bad 'channel' flag {per_channel!r}")
        q = parts[".q"]
        if q.dtype != as_dtype(qname, what) or q.shape != shape:
            raise CodecError(f"{what}: codes are {q.dtype.name}{list(q.shape)}, expected {qname}{list(shape)}")
        n_groups = shape[0] if per_channel else 1
        stats = {k[1:]: _stat(v, n_groups, what) for k, v in parts.items() if k != ".q"}
        lo_code, hi_code = INT_RANGES[qname]
        groups = q.reshape(n_groups, -1).astype(np.float64)
        if entry["mode"] == "symmetric":
            zero = (lo_code + hi_code + 1) // 2  # 0 for signed dtypes, 128 for uint8
            top = hi_code - zero
            values = ((groups - zero) / top) * stats["amax"][:, None]
        else:
            span = stats["hi"] - stats["lo"]
            if (span < 0).any():
                raise CodecError(f"{what}: range with hi < lo")
            values = stats["lo"][:, None] + ((groups - lo_code) / (hi_code - lo_code)) * span[:, None]
        return values.reshape(shape).astype(dtype)


def _symmetric(groups: np.ndarray, lo_code: int, hi_code: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    zero = (lo_code + hi_code + 1) // 2
    top = hi_code - zero
    amax = np.abs(groups).max(axis=1)
    inv = np.divide(top, amax, out=np.zeros_like(amax), where=amax > 0)
    codes = np.clip(np.rint(groups * inv[:, None]), -top, top) + zero
    return codes, {"amax": amax}


def _asymmetric(groups: np.ndarray, lo_code: int, hi_code: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    lo, hi = groups.min(axis=1), groups.max(axis=1)
    span = hi - lo
    if not np.isfinite(span).all():
        raise CodecError("quantize: value range overflows float64")
    levels = hi_code - lo_code
    inv = np.divide(levels, span, out=np.zeros_like(span), where=span > 0)
    codes = np.clip(np.rint((groups - lo[:, None]) * inv[:, None]), 0, levels) + lo_code
    return codes, {"lo": lo, "hi": hi}


def _stat(array: np.ndarray, n_groups: int, what: str) -> np.ndarray:
    check_array(array, what, ndim=1, kind="f")
    if array.shape != (n_groups,):
        raise CodecError(f"{what}: {array.shape[0]} statistics for {n_groups} group(s)")
    stat = array.astype(np.float64)
    if not np.isfinite(stat).all():
        raise CodecError(f"{what}: non-finite quantization range")
    return stat
