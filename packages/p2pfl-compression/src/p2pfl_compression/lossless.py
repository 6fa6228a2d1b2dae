"""``zlib`` and ``lzma``: lossless compression of the raw bytes of every array.

Each array (any dtype: whatever earlier codecs produced) is compressed on its own, or all
arrays together (``concat: true``, better on many small tensors), and travels as a uint8
array. An array that would not shrink travels unchanged. Decoding is bounded: the size each
array declares must match its dtype and shape and fit the decode limits *before*
decompression starts, and the decompressor is never allowed to produce more than that size
(``decompressobj`` / ``LZMADecompressor`` with ``max_length``), so a decompression bomb costs
at most the declared size.
"""

from __future__ import annotations

import lzma
import math
import zlib
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from p2pfl.compression import Codec, CodecError
from p2pfl_compression._common import (
    META_VERSION,
    Arrays,
    DecodeBudget,
    DecodeLimits,
    as_dtype,
    as_int,
    as_shape,
    check_array,
    entries,
    get,
    make_limits,
    take,
)


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = ...) -> bytes: ...


class _Lossless(Codec):
    """Shared logic; subclasses provide :meth:`compress` and :meth:`decompressor`."""

    lossless = True

    def __init__(self, concat: bool = False, limits: DecodeLimits | Mapping[str, int] | None = None) -> None:
        self.concat = bool(concat)
        self.limits = make_limits(limits)

    def compress(self, data: bytes) -> bytes:
        raise NotImplementedError

    def decompressor(self) -> _Decompressor:
        raise NotImplementedError

    # ------------------------------------------------------------------ encode

    def encode(self, arrays: Arrays) -> tuple[Arrays, dict[str, Any]]:
        if self.concat:
            return self._encode_concat(arrays)
        out: Arrays = {}
        tensors: dict[str, dict[str, Any]] = {}
        for name, array in arrays.items():
            raw = _raw(array)
            packed = self.compress(raw)
            if len(packed) < len(raw):
                out[name] = np.frombuffer(packed, dtype=np.uint8)
                tensors[name] = _describe(array)
            else:
                out[name] = array
        return out, {"v": META_VERSION, "tensors": tensors}

    def _encode_concat(self, arrays: Arrays) -> tuple[Arrays, dict[str, Any]]:
        if not arrays:
            return {}, {"v": META_VERSION, "tensors": {}, "concat": False}
        tensors = {name: _describe(array) for name, array in arrays.items()}
        packed = self.compress(b"".join(_raw(a) for a in arrays.values()))
        blob = np.frombuffer(packed, dtype=np.uint8)
        return {self.name: blob}, {"v": META_VERSION, "tensors": tensors, "concat": True}

    # ------------------------------------------------------------------ decode

    def decode(self, arrays: Arrays, meta: dict[str, Any]) -> Arrays:
        what = f"codec {self.name!r}"
        tensors = entries(meta, what)
        concat = meta.get("concat", False)
        if not isinstance(concat, bool):
            raise CodecError(f"{what}: 'concat' must be true or false")
        budget = DecodeBudget(self.limits)
        layout = {name: _layout(entry, f"{what}, tensor {name[:200]!r}", budget) for name, entry in tensors.items()}
        out = dict(arrays)
        if concat:
            blob = check_array(take(out, self.name, what), what, ndim=1, kind="u8")
            if out:
                raise CodecError(f"{what}: unexpected arrays next to the concatenated blob")
            raw = self._inflate(blob, sum(size for _, _, size in layout.values()), what)
            offset = 0
            for name, (dtype, shape, size) in layout.items():
                out[name] = _array(raw[offset : offset + size], dtype, shape)
                offset += size
            return out
        packed = {name: check_array(take(out, name, what), what, ndim=1, kind="u8") for name in layout}
        for name, (dtype, shape, size) in layout.items():
            out[name] = _array(self._inflate(packed[name], size, f"{what}, tensor {name[:200]!r}"), dtype, shape)
        return out

    def _inflate(self, blob: np.ndarray, size: int, what: str) -> bytes:
        """Decompress to exactly ``size`` bytes; never produce more."""
        d = self.decompressor()
        try:
            # room for one byte more than declared: a longer stream shows itself without being
            # inflated further (and zlib reads max_length=0 as "unlimited")
            raw = d.decompress(blob.tobytes(), max_length=size + 1)
        except (zlib.error, lzma.LZMAError, EOFError) as exc:
            raise CodecError(f"{what}: corrupt compressed data ({exc})") from None
        if len(raw) != size or not d.eof:
            raise CodecError(f"{what}: compressed data does not decode to the declared {size} bytes")
        if d.unused_data:
            raise CodecError(f"{what}: trailing bytes after the compressed data")
        return raw


def _raw(array: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(array)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr.tobytes()


def _describe(array: np.ndarray) -> dict[str, Any]:
    return {"dtype": array.dtype.name, "shape": list(array.shape), "nbytes": int(array.nbytes)}


def _layout(entry: dict[str, Any], what: str, budget: DecodeBudget) -> tuple[np.dtype[Any], tuple[int, ...], int]:
    dtype = as_dtype(get(entry, "dtype", what), what)
    shape = as_shape(get(entry, "shape", what), what)
    size = as_int(get(entry, "nbytes", what), f"{what} nbytes")
    if size != math.prod(shape) * dtype.itemsize:
        raise CodecError(
            f"{what}: declares {size} bytes, but {dtype.name}{list(shape)} needs {math.prod(shape) * dtype.itemsize}"
        )
    budget.claim(what, shape, dtype)
    return dtype, shape, size


def _array(raw: bytes, dtype: np.dtype[Any], shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(shape).astype(dtype, copy=False)


class Zlib(_Lossless):
    """zlib (DEFLATE) compression.

    Args:
        level: 0 (store) to 9 (best), or -1 (zlib's default, 6). Default 6.
        concat: compress all arrays as one stream. Default False.
        limits: decode limits.
    """

    name = "zlib"

    def __init__(
        self, level: int = 6, concat: bool = False, limits: DecodeLimits | Mapping[str, int] | None = None
    ) -> None:
        super().__init__(concat, limits)
        if isinstance(level, bool) or not isinstance(level, int) or not -1 <= level <= 9:
            raise ValueError(f"level must be an integer from -1 to 9, got {level!r}")
        self.level = level

    def compress(self, data: bytes) -> bytes:
        return zlib.compress(data, self.level)

    def decompressor(self) -> _Decompressor:
        return zlib.decompressobj()


class Lzma(_Lossless):
    """LZMA (xz container, no integrity check: the wire format carries the data) compression.

    Args:
        level: preset 0 (fast) to 9 (best). Default 6.
        extreme: add ``lzma.PRESET_EXTREME`` (slower, sometimes smaller). Default False.
        concat: compress all arrays as one stream. Default False.
        limits: decode limits.
    """

    name = "lzma"

    def __init__(
        self,
        level: int = 6,
        extreme: bool = False,
        concat: bool = False,
        limits: DecodeLimits | Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(concat, limits)
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
            raise ValueError(f"level must be an integer from 0 to 9, got {level!r}")
        self.level = level
        self.preset = level | (lzma.PRESET_EXTREME if extreme else 0)

    def compress(self, data: bytes) -> bytes:
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE, preset=self.preset)

    def decompressor(self) -> _Decompressor:
        # memlimit bounds the dictionary a hostile header could make the decoder allocate
        # (preset 9 needs 65 MiB)
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=96 * 1024**2)
