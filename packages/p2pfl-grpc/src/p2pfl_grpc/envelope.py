"""Core's wire Envelope, streamed without copying the model (send) and decoded in place (receive).

The bytes are exactly core's format (``p2pfl/wire/p2pfl_wire.proto``): ``decode_message``
reads what :class:`EnvelopeStream` writes, and :func:`decode_envelope` reads what
``encode_message`` writes. What differs is the memory a large model costs:

* sending: every field except the tensor bytes is built by core's ``message_to_proto``; the
  tensor bytes are read straight from the arrays, chunk by chunk, so no serialised copy of
  the model is ever held (``encode_message`` would hold two or three);
* receiving: the reassembled buffer is walked once; the tensors become read-only numpy views
  of that buffer, so the buffer *is* the one copy of the model. Everything but the tensor
  bytes is parsed and validated by core (``message_from_proto`` / ``model_from_proto``); the
  tensors get the same checks as core's ``tensor_from_proto`` (dtype allow-list, dimensions,
  declared size against the limits and against the bytes present).

Two freedoms of the protobuf format make in-place views aligned: length prefixes are written
as fixed-width (non-minimal) varints, so every offset is known before anything is sent, and
a padding field (:data:`PAD_FIELD`, unknown to the schema and ignored by parsers) puts every
tensor's data at a multiple of :data:`ALIGN` bytes from the start of the message.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from p2pfl.compression.codec import EncodedTensors
from p2pfl.parameters import WIRE_DTYPES, Parameters, dtype_name
from p2pfl.wire import p2pfl_wire_pb2 as wpb
from p2pfl.wire.encoding import WireError, WireLimits, message_from_proto, message_to_proto, model_from_proto
from p2pfl.wire.message import Message, ModelPayload

ALIGN = 64
PAD_FIELD = 2047  # Tensor field used for alignment padding (not in the schema: parsers skip it)
WIDE = 5  # bytes of a fixed-width length prefix (lengths below 32 GiB)

# field numbers of p2pfl_wire.proto
ENVELOPE_MODEL = 10
MODEL_TENSORS, MODEL_EXTRAS = 1, 6
ENTRY_KEY, ENTRY_VALUE = 1, 2
GROUP_TENSORS = 1
TENSOR_DATA = 4

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5


# ------------------------------------------------------------------------------ writing


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _wide_varint(value: int) -> bytes:
    """``value`` as a varint of exactly :data:`WIDE` bytes (valid protobuf, just not minimal)."""
    if value >= 1 << (7 * WIDE):
        raise WireError(f"a field of {value} bytes is too large to send")
    return bytes(((value >> (7 * i)) & 0x7F) | (0x80 if i < WIDE - 1 else 0) for i in range(WIDE))


def _tag(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _raw_bytes(array: np.ndarray) -> memoryview:
    """The little-endian, C-order bytes of ``array`` without a copy when it already is so."""
    arr = np.ascontiguousarray(array)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return memoryview(arr.reshape(-1).view(np.uint8))  # type: ignore[arg-type]


class _Writer:
    """Collects the pieces of the stream (small ``bytes`` headers and tensor views) and their offsets."""

    def __init__(self) -> None:
        self.pieces: list[bytes | memoryview] = []
        self.size = 0

    def add(self, piece: bytes | memoryview) -> None:
        if len(piece):
            self.pieces.append(piece)
            self.size += len(piece)


def _tensor_parts(name: str, array: np.ndarray, offset: int) -> tuple[list[bytes | memoryview], int]:
    """One ``Tensor`` message (with its field tag and length) that starts at ``offset``."""
    data = _raw_bytes(array)
    header = wpb.Tensor(name=name, dtype=dtype_name(array.dtype), shape=list(array.shape)).SerializeToString()
    data_prefix = _tag(TENSOR_DATA, LEN) + _wide_varint(len(data))
    pad_tag = _tag(PAD_FIELD, LEN)
    outer = 1 + WIDE  # tag of the repeated field (fields 1: one byte) + wide length
    # the data starts after: outer prefix, header, padding field (tag + 1-byte length + pad), data prefix
    before = offset + outer + len(header) + len(pad_tag) + 1 + len(data_prefix)
    pad = -before % ALIGN
    body: list[bytes | memoryview] = [header, pad_tag + bytes([pad]) + bytes(pad), data_prefix, data]
    length = sum(len(p) for p in body)
    return [_tag(1, LEN) + _wide_varint(length), *body], outer + length


class EnvelopeStream:
    """A message as a sequence of byte chunks; ``size`` is known before the first chunk.

    Args:
        message: the message to send (its arrays are read while chunks are produced; messages
            are immutable once sent, so they do not change meanwhile).
    """

    def __init__(self, message: Message) -> None:
        w = _Writer()
        model = message.model
        head = message_to_proto(replace(message, model=None)).SerializeToString()
        w.add(head)
        if model is not None:
            # every field of the model except the tensors, built by core itself
            bare = replace(model, tensors=replace(model.tensors, arrays={}), extras={})
            rest = message_to_proto(replace(message, model=bare)).model.SerializeToString()
            w.add(_tag(ENVELOPE_MODEL, LEN))
            length_at = len(w.pieces)
            w.add(b"\0" * WIDE)  # placeholder: the model's length, known at the end
            start = w.size
            w.add(rest)
            for name, array in model.tensors.arrays.items():
                parts, _ = _tensor_parts(name, array, w.size)
                for p in parts:
                    w.add(p)
            for key, group in model.extras.items():
                self._add_extras(w, key, group)
            w.pieces[length_at] = _wide_varint(w.size - start)
        self.pieces = w.pieces
        self.size = w.size

    @staticmethod
    def _add_extras(w: _Writer, key: str, group: Parameters) -> None:
        # map entry: {1: key, 2: TensorGroup{1: Tensor...}}, all lengths wide so offsets are known now
        key_field = _tag(ENTRY_KEY, LEN) + _varint(len(key.encode())) + key.encode()
        entry_prefix_at = len(w.pieces)
        w.add(_tag(MODEL_EXTRAS, LEN) + b"\0" * WIDE)
        entry_start = w.size
        w.add(key_field)
        w.add(_tag(ENTRY_VALUE, LEN) + b"\0" * WIDE)
        group_prefix_at = len(w.pieces) - 1
        group_start = w.size
        for name, array in group.items():
            parts, _ = _tensor_parts(name, array, w.size)
            for p in parts:
                w.add(p)
        w.pieces[group_prefix_at] = _tag(ENTRY_VALUE, LEN) + _wide_varint(w.size - group_start)
        w.pieces[entry_prefix_at] = _tag(MODEL_EXTRAS, LEN) + _wide_varint(w.size - entry_start)

    def batches(self, chunk_size: int) -> Iterator[list[memoryview]]:
        """The stream as consecutive lists of views totalling at most ``chunk_size`` bytes each.

        Nothing is copied here: the caller joins each batch (with its own framing) into one
        buffer, so a model is copied only chunk by chunk.
        """
        batch: list[memoryview] = []
        room = chunk_size
        for piece in self.pieces:
            view = memoryview(piece)
            while len(view):
                take = view[:room]
                batch.append(take)
                room -= len(take)
                view = view[len(take) :]
                if room == 0:
                    yield batch
                    batch, room = [], chunk_size
        if batch or self.size == 0:
            yield batch

    def chunks(self, chunk_size: int) -> Iterator[bytes]:
        """The stream as ``bytes`` of at most ``chunk_size`` each."""
        for batch in self.batches(chunk_size):
            yield b"".join(batch)

    def tobytes(self) -> bytes:
        """The whole message at once (for small messages and tests)."""
        return b"".join(self.pieces)


# ------------------------------------------------------------------------------ reading


class _Reader:
    """Walks protobuf fields of ``buf[start:end]`` with every length checked against the bounds."""

    def __init__(self, buf: memoryview, start: int, end: int) -> None:
        self.buf, self.pos, self.end = buf, start, end

    def varint(self) -> int:
        value = shift = 0
        while True:
            if self.pos >= self.end or shift > 63:
                raise WireError("malformed message: truncated or overlong varint")
            byte = self.buf[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def field(self) -> tuple[int, int, int, int]:
        """Next field: (number, wire type, start of the field, start of its value)."""
        start = self.pos
        key = self.varint()
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise WireError("malformed message: field number 0")
        return number, wire_type, start, self.pos

    def skip(self, wire_type: int) -> tuple[int, int]:
        """Skip a value; returns its (start, end); for LEN fields the start is after the length."""
        if wire_type == VARINT:
            self.varint()
            return self.pos, self.pos
        size = {FIXED64: 8, FIXED32: 4}.get(wire_type)
        if size is None:
            if wire_type != LEN:
                raise WireError(f"malformed message: unsupported wire type {wire_type}")
            size = self.varint()
        begin = self.pos
        if size > self.end - begin:
            raise WireError("malformed message: a field runs past the end of its message")
        self.pos = begin + size
        return begin, self.pos

    def done(self) -> bool:
        return self.pos >= self.end


class _TensorSpan:
    """A tensor found in the buffer: its fields without the data, and where the data lies."""

    __slots__ = ("data", "fields")

    def __init__(self, fields: bytes, data: tuple[int, int]) -> None:
        self.fields, self.data = fields, data


def _walk_tensor(buf: memoryview, start: int, end: int) -> _TensorSpan:
    reader, fields, data = _Reader(buf, start, end), bytearray(), (start, start)
    seen_data = False
    while not reader.done():
        number, wire_type, field_start, _ = reader.field()
        value = reader.skip(wire_type)
        if number == TENSOR_DATA and wire_type == LEN:
            if seen_data:
                raise WireError("malformed message: a tensor holds its data twice")
            data, seen_data = value, True
        elif number != PAD_FIELD:
            fields += buf[field_start : reader.pos]
    return _TensorSpan(bytes(fields), data)


def _walk_group(buf: memoryview, start: int, end: int, budget: list[int]) -> list[_TensorSpan]:
    reader, tensors = _Reader(buf, start, end), []
    while not reader.done():
        number, wire_type, _, _ = reader.field()
        begin, stop = reader.skip(wire_type)
        if number == GROUP_TENSORS and wire_type == LEN:
            _spend(budget)
            tensors.append(_walk_tensor(buf, begin, stop))
    return tensors


def _spend(budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise WireError(f"model declares more than {budget[1]} tensors")


def _walk_model(
    buf: memoryview, start: int, end: int, limits: WireLimits
) -> tuple[bytes, list[_TensorSpan], dict[str, list[_TensorSpan]]]:
    reader, rest = _Reader(buf, start, end), bytearray()
    tensors: list[_TensorSpan] = []
    extras: dict[str, list[_TensorSpan]] = {}
    budget = [limits.max_tensors, limits.max_tensors]
    while not reader.done():
        number, wire_type, field_start, _ = reader.field()
        begin, stop = reader.skip(wire_type)
        if number == MODEL_TENSORS and wire_type == LEN:
            _spend(budget)
            tensors.append(_walk_tensor(buf, begin, stop))
        elif number == MODEL_EXTRAS and wire_type == LEN:
            key, group = _walk_entry(buf, begin, stop, budget, limits)
            if key in extras:
                raise WireError(f"malformed message: extras group {key[:80]!r} appears twice")
            extras[key] = group
        else:
            rest += buf[field_start:stop]
    return bytes(rest), tensors, extras


def _walk_entry(
    buf: memoryview, start: int, end: int, budget: list[int], limits: WireLimits
) -> tuple[str, list[_TensorSpan]]:
    reader, key, group = _Reader(buf, start, end), b"", []
    while not reader.done():
        number, wire_type, _, _ = reader.field()
        begin, stop = reader.skip(wire_type)
        if number == ENTRY_KEY and wire_type == LEN:
            if stop - begin > 4 * limits.max_string_chars:
                raise WireError("extras key is too long")
            key = bytes(buf[begin:stop])
            if len(key.decode("utf-8", "replace")) > limits.max_string_chars:
                raise WireError("extras key is too long")
        elif number == ENTRY_VALUE and wire_type == LEN:
            group = _walk_group(buf, begin, stop, budget)
    try:
        return key.decode("utf-8"), group
    except UnicodeDecodeError:
        raise WireError("malformed message: extras key is not UTF-8") from None


def _tensor(buf: bytearray, span: _TensorSpan, limits: WireLimits) -> tuple[str, np.ndarray]:
    """The same checks as core's ``tensor_from_proto``, then a read-only view of ``buf``."""
    t = wpb.Tensor()
    try:
        t.ParseFromString(span.fields)
    except Exception as exc:  # protobuf raises DecodeError or RuntimeError depending on the backend
        raise WireError(f"malformed tensor: {exc}") from None
    if len(t.name) > limits.max_string_chars:
        raise WireError(f"tensor name is {len(t.name)} characters long (limit {limits.max_string_chars})")
    dtype = WIRE_DTYPES.get(t.dtype)
    if dtype is None:
        raise WireError(f"tensor {t.name[:80]!r}: dtype {t.dtype[:40]!r} is not allowed")
    if len(t.shape) > limits.max_ndim:
        raise WireError(f"tensor {t.name[:80]!r}: {len(t.shape)} dimensions (limit {limits.max_ndim})")
    count = math.prod(t.shape)
    expected = count * dtype.itemsize
    if expected > limits.max_tensor_bytes:
        raise WireError(f"tensor {t.name[:80]!r}: declares {expected} bytes (limit {limits.max_tensor_bytes})")
    start, end = span.data
    if expected != end - start:
        raise WireError(f"tensor {t.name[:80]!r}: shape {tuple(t.shape)} needs {expected} bytes, got {end - start}")
    shape = tuple(t.shape)
    if count == 0:
        array = np.empty(shape, dtype=dtype)
    else:
        array = np.frombuffer(buf, dtype=dtype.newbyteorder("<"), count=count, offset=start).reshape(shape)
        array = array.astype(dtype, copy=False)
        if not array.flags.aligned:  # a sender that did not pad: copy this tensor rather than hand out unaligned data
            array = array.copy()
    array.flags.writeable = False
    return t.name, array


def _tensors(buf: bytearray, spans: list[_TensorSpan], limits: WireLimits) -> Parameters:
    out: Parameters = {}
    for span in spans:
        name, array = _tensor(buf, span, limits)
        if name in out:
            raise WireError(f"tensor {name[:80]!r} appears twice")
        out[name] = array
    return out


def decode_envelope(buf: bytearray, limits: WireLimits) -> Message:
    """Decode a whole Envelope held in ``buf``; model tensors become read-only views of ``buf``.

    Raises:
        WireError: the bytes are malformed or exceed ``limits`` (nothing is allocated first).
    """
    if len(buf) > limits.max_message_bytes:
        raise WireError(f"message of {len(buf)} bytes exceeds the limit of {limits.max_message_bytes}")
    view = memoryview(buf)
    reader, head = _Reader(view, 0, len(buf)), bytearray()
    model_span: tuple[int, int] | None = None
    while not reader.done():
        number, wire_type, field_start, _ = reader.field()
        begin, stop = reader.skip(wire_type)
        if number == ENVELOPE_MODEL and wire_type == LEN:
            if model_span is not None:
                raise WireError("malformed message: the model appears twice")
            model_span = (begin, stop)
        else:
            head += view[field_start:stop]
    env = wpb.Envelope()
    try:
        env.ParseFromString(bytes(head))
    except Exception as exc:  # DecodeError / RuntimeError / ValueError depending on the protobuf backend
        raise WireError(f"malformed message: {exc}") from None
    message = message_from_proto(env, limits)
    if model_span is None:
        return message
    rest, tensor_spans, extra_spans = _walk_model(view, *model_span, limits)
    bare = wpb.ModelPayload()
    try:
        bare.ParseFromString(rest)
    except Exception as exc:
        raise WireError(f"malformed model: {exc}") from None
    skeleton = model_from_proto(bare, limits)  # codecs, contributors, counts: checked by core
    payload = ModelPayload(
        tensors=EncodedTensors(_tensors(buf, tensor_spans, limits), skeleton.tensors.codecs, skeleton.tensors.delta),
        num_samples=skeleton.num_samples,
        contributors=skeleton.contributors,
        extras={key: _tensors(buf, extra_spans[key], limits) for key in sorted(extra_spans)},
    )
    return replace(message, model=payload)
