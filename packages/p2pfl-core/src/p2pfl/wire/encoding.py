"""Binary encoding of messages (protobuf, wire version 1) with limits checked before allocation.

Decoding never unpickles or evaluates anything: tensors are raw bytes read with
``numpy.frombuffer`` after their dtype is checked against an allow-list and their declared
shape against the byte count and the limits; codec metadata is JSON text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from google.protobuf.message import DecodeError

from p2pfl.compression.codec import EncodedTensors
from p2pfl.parameters import WIRE_DTYPES, Parameters, dtype_name
from p2pfl.wire import p2pfl_wire_pb2 as pb
from p2pfl.wire.message import Message, ModelPayload

WIRE_VERSION = 1


class WireError(ValueError):
    """A message could not be decoded; the text says why."""


@dataclass(frozen=True)
class WireLimits:
    """Bounds on what a decoded message may declare (checked before anything is allocated)."""

    max_message_bytes: int = 4 * 1024**3
    max_tensors: int = 100_000
    max_tensor_bytes: int = 2 * 1024**3
    max_ndim: int = 16
    max_args: int = 10_000
    max_string_chars: int = 1_000_000
    max_meta_chars: int = 10_000_000


DEFAULT_LIMITS = WireLimits()


# ------------------------------------------------------------------------------ encode


def _tensor_pb(name: str, array: np.ndarray) -> pb.Tensor:
    arr = np.asarray(array, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return pb.Tensor(name=name, dtype=dtype_name(arr.dtype), shape=list(arr.shape), data=arr.tobytes())


def _tensors_pb(arrays: Mapping[str, np.ndarray]) -> list[pb.Tensor]:
    return [_tensor_pb(name, value) for name, value in arrays.items()]


def message_to_proto(msg: Message) -> pb.Envelope:
    env = pb.Envelope(
        version=WIRE_VERSION,
        msg_id=msg.msg_id,
        kind=msg.kind,
        sender=msg.sender,
        origin=msg.origin,
        round=msg.round,
        ttl=msg.ttl,
        args=list(msg.args),
        covered=sorted(msg.covered),
        experiment=msg.experiment,
    )
    if msg.model is not None:
        m = msg.model
        env.model.CopyFrom(
            pb.ModelPayload(
                tensors=_tensors_pb(m.tensors.arrays),
                codecs=[pb.CodecStep(name=n, meta_json=json.dumps(meta)) for n, meta in m.tensors.codecs],
                delta=m.tensors.delta,
                num_samples=m.num_samples,
                contributors=list(m.contributors),
            )
        )
        for key, group in m.extras.items():
            env.model.extras[key].tensors.extend(_tensors_pb(group))
    return env


def encode_message(msg: Message) -> bytes:
    """Serialise a message to bytes."""
    return message_to_proto(msg).SerializeToString()


# ------------------------------------------------------------------------------ decode


def _check_str(value: str, what: str, limits: WireLimits) -> str:
    if len(value) > limits.max_string_chars:
        raise WireError(f"{what} is {len(value)} characters long (limit {limits.max_string_chars})")
    return value


def tensor_from_proto(t: pb.Tensor, limits: WireLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode one tensor, validating dtype, shape and byte count first."""
    dtype = WIRE_DTYPES.get(t.dtype)
    if dtype is None:
        raise WireError(f"tensor {t.name[:80]!r}: dtype {t.dtype[:40]!r} is not allowed")
    if len(t.shape) > limits.max_ndim:
        raise WireError(f"tensor {t.name[:80]!r}: {len(t.shape)} dimensions (limit {limits.max_ndim})")
    count = math.prod(t.shape)  # exact integer: absurd shapes cannot overflow
    expected = count * dtype.itemsize
    if expected > limits.max_tensor_bytes:
        raise WireError(f"tensor {t.name[:80]!r}: declares {expected} bytes (limit {limits.max_tensor_bytes})")
    if expected != len(t.data):
        raise WireError(f"tensor {t.name[:80]!r}: shape {tuple(t.shape)} needs {expected} bytes, got {len(t.data)}")
    array = np.frombuffer(t.data, dtype=dtype.newbyteorder("<")).reshape(tuple(t.shape))
    return array.astype(dtype, copy=False)


def tensors_from_proto(tensors: Iterable[pb.Tensor], limits: WireLimits = DEFAULT_LIMITS) -> Parameters:
    out: Parameters = {}
    for t in tensors:
        name = _check_str(t.name, "tensor name", limits)
        if name in out:
            raise WireError(f"tensor {name[:80]!r} appears twice")
        out[name] = tensor_from_proto(t, limits)
    return out


def _codec_steps(steps: Iterable[pb.CodecStep], limits: WireLimits) -> list[tuple[str, dict]]:
    out = []
    for step in steps:
        if len(step.meta_json) > limits.max_meta_chars:
            raise WireError(f"codec {step.name[:40]!r}: metadata too large")
        try:
            meta = json.loads(step.meta_json) if step.meta_json else {}
        except ValueError as exc:
            raise WireError(f"codec {step.name[:40]!r}: metadata is not JSON: {exc}") from None
        if not isinstance(meta, dict):
            raise WireError(f"codec {step.name[:40]!r}: metadata must be a JSON object")
        out.append((_check_str(step.name, "codec name", limits), meta))
    return out


def model_from_proto(m: pb.ModelPayload, limits: WireLimits = DEFAULT_LIMITS) -> ModelPayload:
    count = len(m.tensors) + sum(len(g.tensors) for g in m.extras.values())
    if count > limits.max_tensors:
        raise WireError(f"model declares {count} tensors (limit {limits.max_tensors})")
    if len(m.contributors) > limits.max_args:
        raise WireError(f"model declares {len(m.contributors)} contributors (limit {limits.max_args})")
    return ModelPayload(
        tensors=EncodedTensors(tensors_from_proto(m.tensors, limits), _codec_steps(m.codecs, limits), m.delta),
        num_samples=m.num_samples,
        contributors=tuple(m.contributors),
        extras={key: tensors_from_proto(group.tensors, limits) for key, group in sorted(m.extras.items())},
    )


def message_from_proto(env: pb.Envelope, limits: WireLimits = DEFAULT_LIMITS) -> Message:
    if env.version != WIRE_VERSION:
        raise WireError(f"unsupported wire version {env.version} (this node speaks {WIRE_VERSION})")
    if not env.kind or not env.origin or not env.msg_id:
        raise WireError("message lacks kind, origin or id")
    if len(env.args) > limits.max_args or len(env.covered) > limits.max_args:
        raise WireError("message declares too many arguments")
    for s in (env.kind, env.origin, env.sender, env.msg_id, env.experiment, *env.args, *env.covered):
        _check_str(s, "string field", limits)
    return Message(
        kind=env.kind,
        origin=env.origin,
        sender=env.sender or env.origin,
        round=env.round,
        args=tuple(env.args),
        ttl=env.ttl,
        covered=frozenset(env.covered),
        model=model_from_proto(env.model, limits) if env.HasField("model") else None,
        experiment=env.experiment,
        msg_id=env.msg_id,
    )


def decode_message(data: bytes, limits: WireLimits = DEFAULT_LIMITS) -> Message:
    """Parse bytes into a :class:`Message`; any problem raises :class:`WireError`."""
    if len(data) > limits.max_message_bytes:
        raise WireError(f"message of {len(data)} bytes exceeds the limit of {limits.max_message_bytes}")
    env = pb.Envelope()
    try:
        env.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise WireError(f"malformed message: {exc}") from None
    return message_from_proto(env, limits)
