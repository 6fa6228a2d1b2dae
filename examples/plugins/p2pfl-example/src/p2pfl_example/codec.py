"""``float16``: updates travel as float16 (lossy; half the bytes of float32).

A delta codec: it sees each update as its difference from the round's starting model, which
every node holds bit for bit, so only the (small) change is rounded to float16, not the
model. Values beyond float16's range are clipped to its largest finite value, so a finite
update never decodes to infinity. float16, bfloat16 and integer tensors pass through.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from p2pfl.compression import Codec, CodecError

Arrays = dict[str, np.ndarray]

#: dtypes cast to float16 (and restored on decode)
CAST = ("float32", "float64")
FLOAT16_MAX = float(np.finfo(np.float16).max)


class Float16(Codec):
    """Casts float32/float64 tensors to float16; ``metrics()`` reports the bytes saved by the last encode."""

    name = "float16"
    delta = True
    lossless = False

    def __init__(self) -> None:
        self._saved_bytes = 0

    def encode(self, arrays: Arrays) -> tuple[Arrays, dict[str, Any]]:
        out: Arrays = {}
        cast: dict[str, str] = {}
        for name, array in arrays.items():
            if array.dtype.name in CAST:
                out[name] = np.clip(array, -FLOAT16_MAX, FLOAT16_MAX).astype(np.float16)
                cast[name] = array.dtype.name
            else:
                out[name] = array
        self._saved_bytes = sum(arrays[n].nbytes - out[n].nbytes for n in cast)
        return out, {"cast": cast}

    def decode(self, arrays: Arrays, meta: dict[str, Any]) -> Arrays:
        cast = meta.get("cast") if isinstance(meta, dict) else None
        if not isinstance(cast, dict):
            raise CodecError("float16: the metadata has no 'cast' mapping")
        out = dict(arrays)
        for name, dtype in cast.items():
            if dtype not in CAST:
                raise CodecError(f"float16: {name!r} cannot be restored to dtype {dtype!r}")
            array = arrays.get(name)
            if array is None or array.dtype != np.float16:
                raise CodecError(f"float16: {name!r} is missing or not float16")
            out[name] = array.astype(dtype)
        return out

    def metrics(self) -> dict[str, float]:
        return {"saved_bytes": float(self._saved_bytes)}
