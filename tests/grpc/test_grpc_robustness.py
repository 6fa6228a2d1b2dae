"""Hostile or broken input on a node's port, slow peers, and address handling."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
from grpc_testkit import OPTIONS, Node, grpc_certs, start_node  # noqa: F401

from p2pfl.communication.transport import PeerUnavailableError, TransportError, TransportOptions
from p2pfl.wire.message import Message
from p2pfl_grpc.addresses import AddressError, parse_address
from p2pfl_grpc.transport import GrpcTransport

pytestmark = pytest.mark.framework

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _tcp(address: str) -> tuple[str, int]:
    parsed = parse_address(address)
    return parsed.host, parsed.port


async def _exchange(a: Node, b: Node, kind: str) -> None:
    """a and b trade one message each way."""
    await a.transport.send(b.node_id, Message(kind=kind, origin=a.node_id))
    await b.transport.send(a.node_id, Message(kind=kind, origin=b.node_id))
    await b.events.wait_for(lambda: any(m.kind == kind for m in b.events.messages), kind, timeout=30)
    await a.events.wait_for(lambda: any(m.kind == kind for m in a.events.messages), kind, timeout=30)


@pytest.mark.parametrize("secure", [False, True], ids=["plaintext", "mtls"])
def test_random_bytes_and_half_open_connections_leave_the_node_working(secure: bool, grpc_certs) -> None:  # noqa: F811
    def make(node_id: str) -> GrpcTransport:
        if secure:
            return GrpcTransport(node_id, "127.0.0.1:0", OPTIONS, certs_dir=str(grpc_certs["main"]))
        return GrpcTransport(node_id, "127.0.0.1:0", OPTIONS, insecure=True)

    async def scenario() -> None:
        target, peer = await start_node(make("node-0")), await start_node(make("node-1"))
        host, port = _tcp(target.address)
        loop = asyncio.get_running_loop()
        held: list[socket.socket] = []
        try:
            await peer.transport.connect(target.address)
            for payload in (
                os.urandom(4096),
                b"\x00" * 1024,
                HTTP2_PREFACE + os.urandom(512),
                b"GET / HTTP/1.1\r\n\r\n",
            ):
                sock = socket.create_connection((host, port))
                await loop.sock_sendall(sock, payload)
                sock.close()
            for partial in (b"", HTTP2_PREFACE[:10], b"\x16\x03\x01"):  # half-open: never completes
                sock = socket.create_connection((host, port))
                if partial:
                    await loop.sock_sendall(sock, partial)
                held.append(sock)
            await _exchange(peer, target, "still-working")  # the existing connection
            newcomer = await start_node(make("node-2"))  # and new ones
            try:
                assert await newcomer.transport.connect(target.address) == "node-0"
                await _exchange(newcomer, target, "new-connection")
            finally:
                await newcomer.transport.stop()
            assert target.events.disconnected == [("node-2", target.events.disconnected[0][1], False)]
        finally:
            for sock in held:
                sock.close()
            await peer.transport.stop()
            await target.transport.stop()

    asyncio.run(scenario())


def test_a_peer_that_never_answers_does_not_block_other_neighbours() -> None:
    async def scenario() -> None:
        blackhole = socket.create_server(("127.0.0.1", 0))  # accepts TCP, never speaks HTTP/2
        slow = f"127.0.0.1:{blackhole.getsockname()[1]}"
        patient = TransportOptions(send_timeout=60.0, connect_timeout=120.0)
        a = await start_node(GrpcTransport("node-0", "127.0.0.1:0", patient, insecure=True))
        c = await start_node(GrpcTransport("node-2", "127.0.0.1:0", patient, insecure=True))
        try:
            await a.transport.connect(c.address)
            stuck = asyncio.ensure_future(a.transport.connect(slow))
            await _exchange(a, c, "meanwhile")
            assert not stuck.done()  # still waiting for the silent peer, yet c was served
            stuck.cancel()
            with pytest.raises(asyncio.CancelledError):
                await stuck
            assert a.transport.neighbors() == ["node-2"]
        finally:
            blackhole.close()
            await a.transport.stop()
            await c.transport.stop()

    asyncio.run(scenario())


def test_advertised_address_differs_from_the_bind_address() -> None:
    async def scenario() -> None:
        a = await start_node(GrpcTransport("node-0", "0.0.0.0:0", OPTIONS, insecure=True, advertise="127.0.0.1"))
        b = await start_node(GrpcTransport("node-1", "127.0.0.1:0", OPTIONS, insecure=True))
        try:
            host, port = _tcp(a.address)
            assert host == "127.0.0.1" and port > 0
            await b.transport.connect(a.address)
            await a.events.wait_for(lambda: a.events.connected, "b", timeout=30)
            assert b.events.connected == [("node-0", a.address)]
            assert a.events.connected == [("node-1", b.address)]
        finally:
            await a.transport.stop()
            await b.transport.stop()

    asyncio.run(scenario())


def test_address_errors_are_clear() -> None:
    async def start(transport: GrpcTransport) -> None:
        try:
            await transport.start(None)  # type: ignore[arg-type]
        finally:
            await transport.stop()

    with pytest.raises(TransportError, match="needs 'advertise'"):
        asyncio.run(start(GrpcTransport("node-0", "0.0.0.0:0", OPTIONS, insecure=True)))
    with pytest.raises(AddressError, match="brackets"):
        GrpcTransport("node-0", "::1:5000", insecure=True)
    with pytest.raises(AddressError, match="port"):
        GrpcTransport("node-0", "127.0.0.1:http", insecure=True)
    with pytest.raises(TypeError, match="unknown options"):
        GrpcTransport("node-0", insecure=True, colour="blue")
    with pytest.raises(ValueError, match="chunk_size"):
        GrpcTransport("node-0", insecure=True, chunk_size=10)

    async def port_in_use() -> None:
        first = await start_node(GrpcTransport("node-0", "127.0.0.1:0", OPTIONS, insecure=True))
        try:
            with pytest.raises(TransportError, match="cannot listen"):
                await start(GrpcTransport("node-1", first.address, OPTIONS, insecure=True))
        finally:
            await first.transport.stop()

    asyncio.run(port_in_use())


def test_connect_to_garbage_and_to_itself() -> None:
    async def scenario() -> None:
        a = await start_node(GrpcTransport("node-0", "127.0.0.1:0", OPTIONS, insecure=True))
        twin = await start_node(GrpcTransport("node-0", "127.0.0.1:0", OPTIONS, insecure=True))
        try:
            for same_id in (twin.address, a.address):  # another node with our id, or ourselves
                with pytest.raises(TransportError, match="already has the id 'node-0'"):
                    await a.transport.connect(same_id)
            with pytest.raises(TransportError):
                await a.transport.connect("not an address:")
            with pytest.raises(PeerUnavailableError):
                await a.transport.send("node-9", Message(kind="x", origin="node-0"))
            assert a.transport.neighbors() == [] and twin.transport.neighbors() == []
        finally:
            await a.transport.stop()
            await twin.transport.stop()

    asyncio.run(scenario())
