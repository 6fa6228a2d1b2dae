"""The streamed envelope encoding and the in-place decoder agree with core's wire format."""

from __future__ import annotations

import numpy as np
import pytest

from p2pfl.compression.codec import EncodedTensors
from p2pfl.parameters import parameters_equal
from p2pfl.testing.conformance.protocol import sample_message
from p2pfl.wire import p2pfl_wire_pb2 as wpb
from p2pfl.wire.encoding import DEFAULT_LIMITS, WireError, WireLimits, decode_message, encode_message
from p2pfl.wire.message import Message, ModelPayload
from p2pfl_grpc.envelope import ALIGN, EnvelopeStream, decode_envelope
from p2pfl_grpc.streaming import ChunkError, frames, read_frame

pytestmark = pytest.mark.framework


def _same(a: Message, b: Message) -> bool:
    fields = ("msg_id", "kind", "origin", "sender", "round", "args", "ttl", "covered", "experiment")
    if any(getattr(a, f) != getattr(b, f) for f in fields) or (a.model is None) != (b.model is None):
        return False
    if a.model is None or b.model is None:
        return True
    x, y = a.model, b.model
    return (
        parameters_equal(x.tensors.arrays, y.tensors.arrays)
        and (x.tensors.codecs, x.tensors.delta, x.num_samples, x.contributors)
        == (y.tensors.codecs, y.tensors.delta, y.num_samples, y.contributors)
        and list(x.extras) == list(y.extras)
        and all(parameters_equal(x.extras[k], y.extras[k]) for k in x.extras)
    )


def _messages() -> list[Message]:
    rng = np.random.default_rng(3)
    odd = {
        "big_endian": rng.normal(size=(3, 4)).astype(">f8"),
        "strided": rng.normal(size=(6, 6)).astype(np.float32)[:, ::2],
        "fortran": np.asfortranarray(rng.normal(size=(3, 5))),
        "bytes": rng.integers(0, 255, size=13, dtype=np.uint8),
    }
    return [
        sample_message("node-0"),
        Message(kind="vote", origin="node-1", round=2, args=("x",)),
        Message(kind="model", origin="n", model=ModelPayload(EncodedTensors(odd, [], True), 5, ("n",))),
        Message(kind="model", origin="n", model=ModelPayload(EncodedTensors({}), 0, ())),
    ]


@pytest.mark.parametrize("message", _messages(), ids=["sample", "control", "odd-layouts", "empty-model"])
def test_stream_is_core_format_both_ways(message: Message) -> None:
    stream = EnvelopeStream(message)
    ours = stream.tobytes()
    assert len(ours) == stream.size
    reference = decode_message(encode_message(message))
    assert _same(decode_message(ours), reference)  # core reads what we stream
    assert _same(decode_envelope(bytearray(ours), DEFAULT_LIMITS), reference)
    assert _same(decode_envelope(bytearray(encode_message(message)), DEFAULT_LIMITS), reference)  # we read core


def test_chunks_reassemble_to_the_same_bytes() -> None:
    stream = EnvelopeStream(sample_message("node-0"))
    for size in (1, 7, 64, 1 << 20):
        assert b"".join(stream.chunks(size)) == stream.tobytes()
        assert all(len(c) <= size for c in stream.chunks(size))


def test_decoded_tensors_are_aligned_read_only_views_of_the_buffer() -> None:
    message = sample_message("node-0")
    buf = bytearray(EnvelopeStream(message).tobytes())
    decoded = decode_envelope(buf, DEFAULT_LIMITS)
    assert decoded.model is not None
    base = np.frombuffer(buf, dtype=np.uint8).ctypes.data
    for name, array in decoded.model.tensors.arrays.items():
        assert not array.flags.writeable, name
        if array.size:
            assert (array.ctypes.data - base) % ALIGN == 0, name  # offset inside the buffer
            assert np.shares_memory(array, np.frombuffer(buf, dtype=np.uint8)), name  # no copy


def test_fuzzed_bytes_raise_wire_error_or_decode_like_core() -> None:
    valid = EnvelopeStream(sample_message("node-0")).tobytes()
    rng = np.random.default_rng(0)
    decoded = 0
    for _ in range(400):
        data = bytearray(valid)
        for pos in rng.integers(0, len(data), size=rng.integers(1, 4)):
            data[pos] = int(rng.integers(0, 256))
        if rng.random() < 0.3:
            del data[int(rng.integers(0, len(data))) :]
        try:
            ours = decode_envelope(bytearray(data), DEFAULT_LIMITS)
        except WireError:
            continue
        decoded += 1
        assert _same(ours, decode_message(bytes(data)))  # anything we accept, core reads the same way
    assert decoded < 400  # the mutations did reach the checks


def _tensor_message(**tensor: object) -> bytearray:
    env = wpb.Envelope(version=1, msg_id="m", kind="model", origin="a", sender="a")
    env.model.tensors.add(**tensor)
    return bytearray(env.SerializeToString())


@pytest.mark.parametrize(
    ("tensor", "limits", "words"),
    [
        ({"name": "w", "dtype": "object", "shape": [1], "data": b"x" * 8}, DEFAULT_LIMITS, "not allowed"),
        ({"name": "w", "dtype": "float32", "shape": [3], "data": b"x" * 8}, DEFAULT_LIMITS, "needs 12 bytes"),
        ({"name": "w", "dtype": "float64", "shape": [1 << 40], "data": b""}, DEFAULT_LIMITS, "limit"),
        ({"name": "w", "dtype": "float32", "shape": [1] * 20, "data": b"xxxx"}, DEFAULT_LIMITS, "dimensions"),
        ({"name": "w", "dtype": "float32", "shape": [2], "data": b"x" * 8}, WireLimits(max_tensors=0), "tensors"),
        ({"name": "w", "dtype": "uint8", "shape": [100], "data": b"x" * 100}, WireLimits(max_tensor_bytes=99), "limit"),
    ],
)
def test_tensor_checks_match_core(tensor: dict, limits: WireLimits, words: str) -> None:
    data = _tensor_message(**tensor)
    with pytest.raises(WireError, match=words):
        decode_envelope(data, limits)
    with pytest.raises(WireError):
        decode_message(bytes(data), limits)


def test_message_larger_than_the_limit_is_refused() -> None:
    data = bytearray(EnvelopeStream(sample_message("node-0")).tobytes())
    with pytest.raises(WireError, match="exceeds"):
        decode_envelope(data, WireLimits(max_message_bytes=len(data) - 1))


def test_chunk_frames_round_trip_and_reject_garbage() -> None:
    payload = bytes(range(256)) * 40
    views = [[memoryview(payload[:1000])], [memoryview(payload[1000:5000]), memoryview(payload[5000:])]]
    raw = list(frames(len(payload), views))
    total, first = read_frame(raw[0], first=True)
    assert total == len(payload)
    assert bytes(first) + b"".join(bytes(read_frame(r, first=False)[1]) for r in raw[1:]) == payload
    with pytest.raises(ChunkError):
        read_frame(raw[1], first=True)  # the first chunk must declare the size
    with pytest.raises(ChunkError):
        read_frame(b"\x12\xff\xff\x03abc", first=False)  # data longer than the frame
    with pytest.raises(ChunkError):
        read_frame(b"\x1a\x00", first=False)  # unknown field
