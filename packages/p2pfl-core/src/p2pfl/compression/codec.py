"""Codecs (plugin kind ``compressors``) and the pipeline that chains them at send time.

A codec maps a dict of named arrays to another dict of named arrays plus JSON metadata, and
back. Chaining is therefore free: ``topk`` turns ``w`` into ``w.values`` + ``w.indices``, a
following ``quantize`` sees ``w.values`` as just another float array, and ``zlib`` compresses
whatever arrays reach it. The metadata travels as JSON text in the wire encoding (parsed with
``json.loads``, never evaluated) and each codec validates what it reads.

Codecs with ``delta = True`` are meant for *updates*: the pipeline hands them the difference
between the node's parameters and the round's starting model (which every node holds,
bit-identical), and the receiver adds the decoded difference back. Messages with no shared
base (the initial model, a model sent to a late joiner) skip delta codecs.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import ml_dtypes
import numpy as np

from p2pfl.parameters import Parameters, is_float

Arrays = dict[str, np.ndarray]


class CodecError(ValueError):
    """A payload cannot be decoded (unknown codec, corrupt data, limits exceeded)."""


class Codec(abc.ABC):
    """One encoding step. Instances belong to one node (they may keep error-feedback state)."""

    #: registered name; also written into the wire metadata so the receiver can decode
    name: ClassVar[str] = "codec"
    #: True if the codec is meant for updates (differences from the round's starting model)
    delta: ClassVar[bool] = False
    #: True if decode(encode(x)) == x bit for bit
    lossless: ClassVar[bool] = False

    @abc.abstractmethod
    def encode(self, arrays: Arrays) -> tuple[Arrays, dict[str, Any]]:
        """Encode ``arrays``; returns new arrays and JSON-serialisable metadata."""

    @abc.abstractmethod
    def decode(self, arrays: Arrays, meta: dict[str, Any]) -> Arrays:
        """Invert :meth:`encode` from the arrays and metadata alone (no sender state)."""

    def metrics(self) -> dict[str, float]:
        """Figures to report with the node's round metrics (e.g. DP's epsilon spent)."""
        return {}


@dataclass
class EncodedTensors:
    """Arrays as they travel: the codec chain applied, in order, and its metadata."""

    arrays: Arrays
    codecs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    delta: bool = False

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())


def _split_passthrough(params: Mapping[str, np.ndarray]) -> tuple[Arrays, Arrays]:
    """Floats go through codecs; integer/bool tensors (counters) travel untouched."""
    coded = {n: a for n, a in params.items() if is_float(a) or a.dtype.kind == "c"}
    plain = {n: a for n, a in params.items() if n not in coded}
    return coded, plain


class CodecPipeline:
    """The ordered codecs of one node, applied to every model it sends.

    Args:
        codecs: codec instances in application order.
        decoders: name → codec instance able to decode (defaults to ``codecs``); a receiver
            may get payloads encoded by any codec it has registered.
    """

    PLAIN_PREFIX = "plain/"
    CODED_PREFIX = "coded/"

    def __init__(self, codecs: Sequence[Codec] = (), decoders: Mapping[str, Codec] | None = None) -> None:
        self.codecs = list(codecs)
        self.decoders = dict(decoders) if decoders is not None else {c.name: c for c in self.codecs}

    def encode(self, params: Mapping[str, np.ndarray], base: Mapping[str, np.ndarray] | None = None) -> EncodedTensors:
        """Encode ``params``; with a ``base``, delta codecs see ``params - base``."""
        coded, plain = _split_passthrough(params)
        use_delta = base is not None and any(c.delta for c in self.codecs)
        if use_delta:
            assert base is not None
            coded = {n: (a.astype(np.float64) - base[n].astype(np.float64)).astype(a.dtype) for n, a in coded.items()}
        arrays: Arrays = dict(coded)
        steps: list[tuple[str, dict[str, Any]]] = []
        for codec in self.codecs:
            if codec.delta and not use_delta:
                continue
            arrays, meta = codec.encode(arrays)
            steps.append((codec.name, meta))
        out = {self.CODED_PREFIX + n: a for n, a in arrays.items()}
        out.update({self.PLAIN_PREFIX + n: a for n, a in plain.items()})
        meta_order = {"order": list(params), "dtypes": {n: params[n].dtype.name for n in coded}}
        return EncodedTensors(out, [("pipeline", meta_order), *steps], use_delta)

    def decode(self, encoded: EncodedTensors, base: Mapping[str, np.ndarray] | None = None) -> Parameters:
        """Invert :meth:`encode`; raises :class:`CodecError` for unknown codecs or bad data."""
        if not encoded.codecs or encoded.codecs[0][0] != "pipeline":
            raise CodecError("payload has no pipeline header")
        header = encoded.codecs[0][1]
        arrays = {n[len(self.CODED_PREFIX) :]: a for n, a in encoded.arrays.items() if n.startswith(self.CODED_PREFIX)}
        plain = {n[len(self.PLAIN_PREFIX) :]: a for n, a in encoded.arrays.items() if n.startswith(self.PLAIN_PREFIX)}
        for name, meta in reversed(encoded.codecs[1:]):
            codec = self.decoders.get(name)
            if codec is None:
                raise CodecError(f"payload uses codec {name!r}, which this node does not have")
            try:
                arrays = codec.decode(arrays, meta)
            except CodecError:
                raise
            except Exception as exc:
                raise CodecError(f"codec {name!r} could not decode the payload: {exc}") from exc
        return self._restore(arrays, plain, header, base if encoded.delta else None)

    def _restore(
        self, arrays: Arrays, plain: Arrays, header: dict[str, Any], base: Mapping[str, np.ndarray] | None
    ) -> Parameters:
        order, dtypes = header.get("order"), header.get("dtypes")
        if not isinstance(order, list) or not isinstance(dtypes, dict):
            raise CodecError("corrupt pipeline header")
        if not all(isinstance(n, str) for n in order) or not all(isinstance(d, str) for d in dtypes.values()):
            raise CodecError("corrupt pipeline header: names and dtypes must be strings")
        if set(order) != set(arrays) | set(plain) or set(dtypes) != set(arrays):
            raise CodecError("decoded tensors do not match the pipeline header")
        params: Parameters = {}
        for name in order:
            if name in plain:
                params[name] = plain[name]
                continue
            value = arrays[name]
            if base is not None:
                if name not in base or base[name].shape != value.shape:
                    raise CodecError(f"delta for {name!r} does not match the base model")
                value = base[name].astype(np.float64) + value.astype(np.float64)
            dtype = _dtype(dtypes[name])
            if not (dtype.kind in "fc" or dtype == np.dtype(ml_dtypes.bfloat16)):
                raise CodecError(f"coded tensor {name!r} declares the non-float dtype {dtype.name}")
            params[name] = np.asarray(value).astype(dtype, copy=False)
        return params

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for codec in self.codecs:
            out.update({f"{codec.name}.{k}": v for k, v in codec.metrics().items()})
        return out


def _dtype(name: str) -> np.dtype[Any]:
    from p2pfl.parameters import WIRE_DTYPES

    try:
        return WIRE_DTYPES[name]
    except KeyError:
        raise CodecError(f"unsupported dtype {name!r}") from None
