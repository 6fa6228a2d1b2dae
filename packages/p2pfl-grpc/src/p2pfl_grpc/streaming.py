"""Chunk framing of the Send call, and the budget of bytes being received at once.

Each chunk on the wire is a ``Chunk`` message of ``node_service.proto`` (``total_size`` on
the first, then ``data``). The frames are written and read here by hand so that a chunk's
bytes are copied exactly once on each side: from the arrays into the frame, and from the
frame into the receive buffer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator

MAX_CHUNK = 4 << 20
MAX_FRAME = MAX_CHUNK + 64  # a chunk plus its framing
_TOTAL_TAG = bytes([1 << 3 | 0])  # Chunk.total_size, varint
_DATA_TAG = bytes([2 << 3 | 2])  # Chunk.data, length-delimited


class ChunkError(ValueError):
    """A frame is not a well-formed ``Chunk``."""


class Refused(Exception):
    """A received message is dropped; the text is the reason sent back to the sender."""


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def frames(total: int, batches: Iterable[list[memoryview]]) -> Iterator[bytes]:
    """Frame each batch of views as one ``Chunk``; the first also carries ``total``."""
    first = True
    for batch in batches:
        size = sum(len(v) for v in batch)
        head = (_TOTAL_TAG + _varint(total) if first else b"") + _DATA_TAG + _varint(size)
        first = False
        yield b"".join([head, *batch])


def _read_varint(raw: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(raw) and shift <= 63:
        byte = raw[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ChunkError("malformed chunk: bad varint")


def read_frame(raw: bytes, first: bool) -> tuple[int, memoryview]:
    """Parse one ``Chunk``: returns (total_size or -1, a view of its data)."""
    view = memoryview(raw)
    pos, total, data = 0, -1, view[0:0]
    while pos < len(view):
        key, pos = _read_varint(view, pos)
        if key == 1 << 3 | 0:
            total, pos = _read_varint(view, pos)
        elif key == 2 << 3 | 2:
            size, pos = _read_varint(view, pos)
            if size > len(view) - pos:
                raise ChunkError("malformed chunk: data runs past the end")
            data, pos = view[pos : pos + size], pos + size
        else:
            raise ChunkError(f"malformed chunk: unexpected field {key >> 3}")
    if first and total < 0:
        raise ChunkError("the first chunk does not declare the message size")
    return total, data


class ByteBudget:
    """Bytes of messages being reassembled at once: a sender waits until enough are free.

    A message larger than the whole budget is refused outright.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.free = capacity
        self._freed = asyncio.Event()

    async def acquire(self, size: int) -> int:
        if size > self.capacity:
            raise Refused(f"message of {size} bytes exceeds the receive budget of {self.capacity} bytes")
        while self.free < size:  # checked and awaited without a gap: a release cannot be missed
            self._freed.clear()
            await self._freed.wait()
        self.free -= size
        return size

    def release(self, size: int) -> None:
        if size:
            self.free += size
            self._freed.set()
