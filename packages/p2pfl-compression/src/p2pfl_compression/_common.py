"""What the codecs share: decode limits, metadata validation, part naming, error feedback.

Decoding reads metadata that arrived from the network. Every value is checked here for type
and range before it is used, and every size a payload declares is checked against
:class:`DecodeLimits` *before* anything is allocated; any problem is a
:class:`~p2pfl.compression.CodecError`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from p2pfl.compression import Codec, CodecError
from p2pfl.parameters import WIRE_DTYPES, is_float

Arrays = dict[str, np.ndarray]

META_VERSION = 1
MAX_NDIM = 32
MAX_INT = 2**63 - 1


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds on what one decode may allocate (per tensor, and for the whole payload)."""

    max_tensor_bytes: int = 2 * 1024**3
    max_total_bytes: int = 4 * 1024**3


DEFAULT_LIMITS = DecodeLimits()


def make_limits(value: DecodeLimits | Mapping[str, int] | None) -> DecodeLimits:
    """Limits from a codec parameter: ``None`` (defaults), a :class:`DecodeLimits` or a mapping (YAML)."""
    if value is None:
        return DEFAULT_LIMITS
    if isinstance(value, DecodeLimits):
        return value
    if isinstance(value, Mapping):
        try:
            return DecodeLimits(**{k: int(v) for k, v in value.items()})
        except TypeError as exc:
            raise ValueError(f"limits: {exc}; accepted keys: max_tensor_bytes, max_total_bytes") from None
    raise ValueError(f"limits must be a mapping with max_tensor_bytes / max_total_bytes, got {value!r}")


class DecodeBudget:
    """Counts the bytes one decode call allocates; refuses a claim beyond the limits."""

    def __init__(self, limits: DecodeLimits) -> None:
        self.limits = limits
        self.used = 0

    def claim(self, what: str, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        nbytes = math.prod(shape) * dtype.itemsize  # exact integer: absurd shapes cannot overflow
        if nbytes > self.limits.max_tensor_bytes:
            raise CodecError(f"{what}: declares {nbytes} bytes (limit {self.limits.max_tensor_bytes} per tensor)")
        self.used += nbytes
        if self.used > self.limits.max_total_bytes:
            raise CodecError(f"{what}: payload declares more than {self.limits.max_total_bytes} bytes in all")


# ------------------------------------------------------------------ metadata validation


def get(meta: Mapping[str, Any], key: str, what: str) -> Any:
    if not isinstance(meta, Mapping) or key not in meta:
        raise CodecError(f"{what}: metadata lacks {key!r}")
    return meta[key]


def as_int(value: Any, what: str, lo: int = 0, hi: int = MAX_INT) -> int:
    # bool is an int subclass; a float would hide a fractional or huge value
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise CodecError(f"{what}: expected an integer in [{lo}, {hi}], got {_show(value)}")
    return value


def as_shape(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > MAX_NDIM:
        raise CodecError(f"{what}: shape must be a list of at most {MAX_NDIM} integers, got {_show(value)}")
    return tuple(as_int(v, f"{what} shape", 0, 2**40) for v in value)


def as_dtype(value: Any, what: str, floating: bool = False) -> np.dtype[Any]:
    dtype = WIRE_DTYPES.get(value) if isinstance(value, str) else None
    if dtype is None:
        raise CodecError(f"{what}: unsupported dtype {_show(value)}")
    if floating and not is_float(np.empty(0, dtype)):
        raise CodecError(f"{what}: dtype {value!r} is not a floating dtype")
    return dtype


def as_choice(value: Any, what: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise CodecError(f"{what}: expected one of {', '.join(choices)}, got {_show(value)}")
    return str(value)


def check_version(meta: Any, what: str) -> None:
    if not isinstance(meta, Mapping):
        raise CodecError(f"{what}: metadata must be a JSON object")
    if get(meta, "v", what) != META_VERSION:
        raise CodecError(f"{what}: unsupported metadata version {_show(meta.get('v'))} (expected {META_VERSION})")


def entries(meta: Any, what: str) -> dict[str, dict[str, Any]]:
    """The ``tensors`` mapping of per-tensor metadata, each a JSON object."""
    check_version(meta, what)
    tensors = get(meta, "tensors", what)
    if not isinstance(tensors, dict) or not all(isinstance(e, dict) for e in tensors.values()):
        raise CodecError(f"{what}: 'tensors' must map names to JSON objects")
    return tensors


def take(arrays: Arrays, name: str, what: str) -> np.ndarray:
    """Remove and return a part array; a missing part is a corrupt payload."""
    try:
        return arrays.pop(name)
    except KeyError:
        raise CodecError(f"{what}: payload lacks array {name[:200]!r}") from None


def check_array(array: np.ndarray, what: str, ndim: int | None = None, kind: str | None = None) -> np.ndarray:
    """``kind``: "f" floating (bfloat16 included), "i" integer, "u8" uint8."""
    if ndim is not None and array.ndim != ndim:
        raise CodecError(f"{what}: expected {ndim} dimension(s), got shape {array.shape}")
    ok = {
        None: True,
        "f": is_float(array),
        "i": array.dtype.kind in "iu",
        "u8": array.dtype == np.uint8,
    }[kind]
    if not ok:
        raise CodecError(f"{what}: unexpected dtype {array.dtype.name}")
    return array


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------------ parameters


def float_param(value: Any, name: str, lo: float, hi: float, lo_open: bool = False) -> float:
    """A float constructor parameter. Strings are accepted because YAML 1.1 reads ``1e-5`` as text."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or math.isnan(number) or number < lo or number > hi or (lo_open and number == lo):
        bracket = "(" if lo_open else "["
        raise ValueError(f"{name} must be in {bracket}{lo}, {hi}], got {value!r}")
    return number


def choice_param(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


# ------------------------------------------------------------------ arrays


def work_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """Arithmetic precision for a tensor: float64 for float64 tensors, float32 otherwise."""
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def to_work(array: np.ndarray) -> np.ndarray:
    return np.asarray(array).astype(work_dtype(array.dtype))


def codes(array: np.ndarray) -> bool:
    """Lossy codecs touch non-empty float tensors; everything else passes through."""
    return is_float(array) and array.size > 0


def put(out: Arrays, name: str, array: np.ndarray, codec: str) -> None:
    """Add an output array; a name already taken would make the payload ambiguous."""
    if name in out:
        raise CodecError(f"{codec}: output name {name!r} clashes with another tensor; rename the tensor")
    out[name] = array


class TensorCodec(Codec):
    """A codec that codes each float tensor on its own into named parts ``<name><suffix>``.

    Subclasses implement :meth:`encode_tensor` (return ``None`` to send the tensor unchanged,
    when coding would not shrink it) and :meth:`decode_tensor`; :meth:`suffixes` names the
    parts of one entry. Integer, complex and empty tensors pass through untouched.
    """

    def __init__(self, limits: DecodeLimits | Mapping[str, int] | None = None) -> None:
        self.limits = make_limits(limits)
        # a node may encode from several threads; error-feedback state must not interleave
        self._lock = threading.Lock()

    def encode(self, arrays: Arrays) -> tuple[Arrays, dict[str, Any]]:
        with self._lock:
            return self._encode(arrays)

    def _encode(self, arrays: Arrays) -> tuple[Arrays, dict[str, Any]]:
        out: Arrays = {n: a for n, a in arrays.items() if not codes(a)}
        tensors: dict[str, dict[str, Any]] = {}
        coded: dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]] = {}
        for name, array in arrays.items():
            if not codes(array):
                continue
            result = self.encode_tensor(name, np.asarray(array))
            if isinstance(result, np.ndarray):  # sent whole (maybe changed by error feedback)
                put(out, name, result, self.name)
            else:
                coded[name] = result
        for name, (parts, entry) in coded.items():
            for suffix, part in parts.items():
                put(out, name + suffix, part, self.name)
            tensors[name] = entry
        return out, {"v": META_VERSION, **self.header(), "tensors": tensors}

    def decode(self, arrays: Arrays, meta: dict[str, Any]) -> Arrays:
        what = f"codec {self.name!r}"
        tensors = entries(meta, what)
        context = self.check_header(meta)
        out = dict(arrays)
        # take every part first: a decoded name may equal another entry's part name
        parts = {
            name: {s: take(out, name + s, what) for s in self.suffixes(entry, what)} for name, entry in tensors.items()
        }
        budget = DecodeBudget(self.limits)
        for name, entry in tensors.items():
            if name in out:
                raise CodecError(f"{what}: tensor {name[:200]!r} appears both coded and uncoded")
            out[name] = self.decode_tensor(parts[name], entry, f"{what}, tensor {name[:200]!r}", budget, context)
        return out

    # --- for subclasses -----------------------------------------------------------------

    def header(self) -> dict[str, Any]:
        """Codec-level metadata written next to ``tensors`` (e.g. a seed)."""
        return {}

    def check_header(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Validate what :meth:`header` wrote; the result is passed to :meth:`decode_tensor`."""
        return {}

    def suffixes(self, entry: dict[str, Any], what: str) -> tuple[str, ...]:
        raise NotImplementedError

    def encode_tensor(self, name: str, array: np.ndarray) -> np.ndarray | tuple[dict[str, np.ndarray], dict[str, Any]]:
        raise NotImplementedError

    def decode_tensor(
        self,
        parts: dict[str, np.ndarray],
        entry: dict[str, Any],
        what: str,
        budget: DecodeBudget,
        context: dict[str, Any],
    ) -> np.ndarray:
        raise NotImplementedError


def tensor_header(entry: dict[str, Any], what: str, budget: DecodeBudget) -> tuple[np.dtype[Any], tuple[int, ...]]:
    """The original float dtype and shape of one entry, checked and claimed against the budget."""
    dtype = as_dtype(get(entry, "dtype", what), what, floating=True)
    shape = as_shape(get(entry, "shape", what), what)
    budget.claim(what, shape, dtype)
    return dtype, shape


class ErrorFeedback:
    """Per-tensor residuals (what was not sent), added to the same tensor's next input.

    Lives in one codec instance, i.e. one node. A residual whose shape no longer matches
    (another model) is dropped.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = bool(enabled)
        self._residuals: dict[str, np.ndarray] = {}

    def add(self, name: str, value: np.ndarray) -> np.ndarray:
        residual = self._residuals.get(name)
        if not self.enabled or residual is None or residual.shape != value.shape:
            return value
        return value + residual.astype(value.dtype)

    def store(self, name: str, accumulated: np.ndarray, sent: np.ndarray) -> None:
        """Keep ``accumulated - sent`` (both in the working dtype) for the next encode."""
        if self.enabled:
            self._residuals[name] = accumulated - sent

    def keep(self, name: str, residual: np.ndarray) -> None:
        """Keep an already computed residual."""
        if self.enabled:
            self._residuals[name] = residual

    def residual(self, name: str) -> np.ndarray | None:
        return self._residuals.get(name)

    def reset(self) -> None:
        self._residuals.clear()
