"""Large models stream in chunks with default limits; limits that are exceeded are enforced."""

from __future__ import annotations

import asyncio
import hashlib
import logging

import numpy as np
import pytest
from grpc_testkit import OPTIONS, start_node

from p2pfl.communication.transport import TransportOptions
from p2pfl.compression.codec import EncodedTensors
from p2pfl.wire.encoding import WireLimits
from p2pfl.wire.message import Message, ModelPayload
from p2pfl_grpc.transport import GrpcTransport

pytestmark = pytest.mark.framework

MB = 1 << 20


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name, array in arrays.items():
        h.update(name.encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def test_a_200_mb_model_arrives_bit_identical_with_default_limits() -> None:
    rng = np.random.default_rng(0)
    # four float32 tensors of 50 MB and a few small ones: 200 MB in all
    arrays = {f"layer{i}.weight": np.frombuffer(rng.bytes(50 * MB), dtype=np.float32) for i in range(4)}
    arrays["layer0.bias"] = rng.normal(size=17).astype(np.float32)
    arrays["steps"] = np.array(9, dtype=np.int64)
    expected = _digest(arrays)
    message = Message(kind="model", origin="node-0", model=ModelPayload(EncodedTensors(arrays), 1000, ("node-0",)))

    async def scenario() -> str:
        # default TransportOptions: nothing raised for the size of the model
        a = await start_node(GrpcTransport("node-0", "127.0.0.1:0", TransportOptions(), insecure=True))
        b = await start_node(GrpcTransport("node-1", "127.0.0.1:0", TransportOptions(), insecure=True))
        try:
            await a.transport.connect(b.address)
            await a.transport.send("node-1", message)
            await b.events.wait_for(lambda: b.events.messages, "the model", timeout=120)
            got = b.events.messages[0]
            assert got.model is not None
            return _digest(got.model.tensors.arrays)
        finally:
            await a.transport.stop()
            await b.transport.stop()

    assert asyncio.run(scenario()) == expected


def test_a_message_over_the_receivers_limit_is_refused_and_the_connection_survives(caplog) -> None:
    small = TransportOptions(send_timeout=60, connect_timeout=20, limits=WireLimits(max_message_bytes=MB))
    big = Message(
        kind="model",
        origin="node-0",
        model=ModelPayload(EncodedTensors({"w": np.zeros(2 * MB, np.uint8)}), 1, ("node-0",)),
    )

    async def scenario() -> None:
        a = await start_node(GrpcTransport("node-0", "127.0.0.1:0", OPTIONS, insecure=True))
        b = await start_node(GrpcTransport("node-1", "127.0.0.1:0", small, insecure=True))
        try:
            await a.transport.connect(b.address)
            with caplog.at_level(logging.WARNING, logger="p2pfl_grpc.transport"):
                await a.transport.send("node-1", big)  # refused by the receiver, reported back
            await a.transport.send("node-1", Message(kind="after", origin="node-0"))
            await b.events.wait_for(lambda: b.events.messages, "the next message", timeout=30)
            assert [m.kind for m in b.events.messages] == ["after"]
            assert b.transport.neighbors() == ["node-0"]
        finally:
            await a.transport.stop()
            await b.transport.stop()

    asyncio.run(scenario())
    assert any("exceeds the limit" in r.getMessage() for r in caplog.records)


def test_a_receive_budget_smaller_than_the_message_refuses_it() -> None:
    message = Message(
        kind="model",
        origin="node-0",
        model=ModelPayload(EncodedTensors({"w": np.ones(3 * MB, np.uint8)}), 1, ("node-0",)),
    )

    async def scenario() -> None:
        a = await start_node(GrpcTransport("node-0", "127.0.0.1:0", OPTIONS, insecure=True))
        b = await start_node(GrpcTransport("node-1", "127.0.0.1:0", OPTIONS, insecure=True, max_receive_bytes=2 * MB))
        try:
            await a.transport.connect(b.address)
            await a.transport.send("node-1", message)
            small = Message(
                kind="model",
                origin="node-0",
                model=ModelPayload(EncodedTensors({"w": np.ones(MB, np.uint8)}), 1, ("node-0",)),
            )
            await a.transport.send("node-1", small)
            await b.events.wait_for(lambda: b.events.messages, "the small model", timeout=30)
            assert [m.msg_id for m in b.events.messages] == [small.msg_id]
        finally:
            await a.transport.stop()
            await b.transport.stop()

    asyncio.run(scenario())


def test_concurrent_sends_to_one_peer_keep_their_order_and_all_arrive() -> None:
    async def scenario() -> None:
        a = await start_node(GrpcTransport("node-0", "127.0.0.1:0", OPTIONS, insecure=True, chunk_size=64 << 10))
        b = await start_node(GrpcTransport("node-1", "127.0.0.1:0", OPTIONS, insecure=True))
        try:
            await a.transport.connect(b.address)
            sent = [
                Message(
                    kind="model",
                    origin="node-0",
                    args=(str(i),),
                    model=ModelPayload(EncodedTensors({"w": np.full(200_000, i, np.float32)}), i, ("node-0",)),
                )
                for i in range(8)
            ]
            await asyncio.gather(*(a.transport.send("node-1", m) for m in sent))
            await b.events.wait_for(lambda: len(b.events.messages) == len(sent), "8 models", timeout=60)
            assert [m.args[0] for m in b.events.messages] == [str(i) for i in range(8)]
            for m in b.events.messages:
                assert m.model is not None
                assert np.array_equal(m.model.tensors.arrays["w"], np.full(200_000, int(m.args[0]), np.float32))
        finally:
            await a.transport.stop()
            await b.transport.stop()

    asyncio.run(scenario())
