"""TLS and mutual TLS: who may join, and who may speak for whom."""

from __future__ import annotations

import asyncio
import logging

import grpc
import grpc.aio
import pytest
from grpc_testkit import OPTIONS, grpc_certs, start_node  # noqa: F401

from p2pfl.communication.transport import PeerUnavailableError
from p2pfl.wire.message import Message
from p2pfl_grpc.proto import node_service_pb2 as pb
from p2pfl_grpc.security import SecurityError
from p2pfl_grpc.transport import SERVICE, GrpcTransport

pytestmark = pytest.mark.framework


def _tls(folder, node_id: str, **extra) -> GrpcTransport:
    return GrpcTransport(node_id, "127.0.0.1:0", OPTIONS, tls={"certs_dir": str(folder), **extra})


def _channel(folder, cert_name: str, target: str, server_name: str | None = None) -> grpc.aio.Channel:
    creds = grpc.ssl_channel_credentials(
        (folder / "ca.pem").read_bytes(),
        (folder / f"{cert_name}.key").read_bytes(),
        (folder / f"{cert_name}.pem").read_bytes(),
    )
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    return grpc.aio.secure_channel(target, creds, options=options)


def _handshake(channel: grpc.aio.Channel):
    return channel.unary_unary(
        f"/{SERVICE}/Handshake",
        request_serializer=pb.Hello.SerializeToString,
        response_deserializer=pb.Welcome.FromString,
    )


def test_a_certificate_from_another_ca_is_refused(grpc_certs) -> None:  # noqa: F811
    async def scenario() -> None:
        server = await start_node(_tls(grpc_certs["main"], "node-0"))
        # trusts the right CA (so it accepts the server) but holds a certificate of another CA
        stranger = GrpcTransport(
            "node-1",
            "127.0.0.1:0",
            OPTIONS,
            ca=str(grpc_certs["main"] / "ca.pem"),
            cert=str(grpc_certs["other"] / "node-1.pem"),
            key=str(grpc_certs["other"] / "node-1.key"),
        )
        outsider = await start_node(stranger)
        try:
            with pytest.raises(PeerUnavailableError):
                await outsider.transport.connect(server.address)
            assert server.transport.neighbors() == [] and server.events.connected == []
        finally:
            await outsider.transport.stop()
            await server.transport.stop()

    asyncio.run(scenario())


def test_a_certificate_for_another_node_cannot_claim_an_id(grpc_certs) -> None:  # noqa: F811
    async def scenario() -> None:
        server = await start_node(_tls(grpc_certs["main"], "node-0"))
        channel = _channel(grpc_certs["main"], "mallory", server.address)
        try:
            hello = pb.Hello(version=1, node_id="node-1", address="127.0.0.1:1", incarnation="x")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _handshake(channel)(hello, timeout=20)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "mallory" in (refused.value.details() or "")
            # the same certificate may speak for its own name
            hello = pb.Hello(version=1, node_id="mallory", address="127.0.0.1:1", incarnation="x")
            welcome = await _handshake(channel)(hello, timeout=20)
            assert welcome.node_id == "node-0"
        finally:
            await channel.close()
            await server.transport.stop()
        assert server.events.connected == []

    asyncio.run(scenario())


def test_calls_without_the_handshake_token_are_refused(grpc_certs) -> None:  # noqa: F811
    async def scenario() -> None:
        server = await start_node(_tls(grpc_certs["main"], "node-0"))
        channel = _channel(grpc_certs["main"], "node-2", server.address)
        watch = channel.unary_stream(
            f"/{SERVICE}/Watch",
            request_serializer=pb.Attach.SerializeToString,
            response_deserializer=pb.Event.FromString,
        )
        try:
            for metadata in ((("p2pfl-node", "node-2"),), (("p2pfl-node", "node-2"), ("p2pfl-token", "guess"))):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    async for _ in watch(pb.Attach(token="t", incarnation="x"), metadata=metadata, timeout=20):
                        pass
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        finally:
            await channel.close()
            await server.transport.stop()
        assert server.transport.neighbors() == []

    asyncio.run(scenario())


def test_a_message_whose_sender_names_another_node_is_refused(grpc_certs, caplog) -> None:  # noqa: F811
    async def scenario() -> None:
        a, b = (
            await start_node(_tls(grpc_certs["main"], "node-0")),
            await start_node(_tls(grpc_certs["main"], "node-1")),
        )
        try:
            await a.transport.connect(b.address)
            with caplog.at_level(logging.WARNING, logger="p2pfl_grpc.transport"):
                await a.transport.send("node-1", Message(kind="forged", origin="node-2"))
                await a.transport.send("node-1", Message(kind="forged", origin="node-0", sender="node-2"))
            await a.transport.send("node-1", Message(kind="honest", origin="node-0"))
            await b.events.wait_for(lambda: b.events.messages, "the honest message", timeout=30)
            assert [m.kind for m in b.events.messages] == ["honest"]
        finally:
            await a.transport.stop()
            await b.transport.stop()

    asyncio.run(scenario())
    refusals = [r.getMessage() for r in caplog.records if "is not the caller" in r.getMessage()]
    assert len(refusals) >= 2  # logged by the receiver (and reported back to the sender)


def test_plaintext_peers_cannot_join_a_tls_network(grpc_certs) -> None:  # noqa: F811
    async def scenario() -> None:
        secure = await start_node(_tls(grpc_certs["main"], "node-0"))
        plain = await start_node(GrpcTransport("node-1", "127.0.0.1:0", OPTIONS, insecure=True))
        try:
            with pytest.raises(PeerUnavailableError):
                await plain.transport.connect(secure.address)
            with pytest.raises(PeerUnavailableError):
                await secure.transport.connect(plain.address)
            assert secure.transport.neighbors() == [] and plain.transport.neighbors() == []
            assert secure.events.connected == [] and plain.events.connected == []
        finally:
            await plain.transport.stop()
            await secure.transport.stop()

    asyncio.run(scenario())


def test_a_node_must_present_the_certificate_of_the_id_it_announces(grpc_certs) -> None:  # noqa: F811
    async def scenario() -> None:
        a = await start_node(_tls(grpc_certs["main"], "node-0"))
        liar = await start_node(_tls(grpc_certs["main"], "node-3"))
        liar.transport.node_id = "node-4"  # announces node-4 while its certificate names node-3
        try:
            with pytest.raises(PeerUnavailableError):
                await a.transport.connect(liar.address)
            assert a.transport.neighbors() == [] and a.events.connected == []
        finally:
            await a.transport.stop()
            await liar.transport.stop()

    asyncio.run(scenario())


def test_mutual_tls_over_a_unix_socket(grpc_certs, tmp_path) -> None:  # noqa: F811
    async def scenario() -> None:
        a = await start_node(
            GrpcTransport("node-0", f"unix:{tmp_path}/a.sock", OPTIONS, certs_dir=str(grpc_certs["main"]))
        )
        b = await start_node(
            GrpcTransport("node-1", f"unix:{tmp_path}/b.sock", OPTIONS, certs_dir=str(grpc_certs["main"]))
        )
        try:
            assert await a.transport.connect(b.address) == "node-1"
            await b.transport.send("node-0", Message(kind="hi", origin="node-1"))
            await a.events.wait_for(lambda: a.events.messages, "a message over the unix socket", timeout=30)
        finally:
            await a.transport.stop()
            await b.transport.stop()

    asyncio.run(scenario())


def test_plaintext_must_be_asked_for_and_is_logged(caplog) -> None:
    with pytest.raises(SecurityError, match="insecure: true"):
        GrpcTransport("node-0", "127.0.0.1:0")
    with pytest.raises(SecurityError, match="contradicts"):
        GrpcTransport("node-0", "127.0.0.1:0", insecure=True, ca="ca.pem")

    async def scenario() -> None:
        with caplog.at_level(logging.WARNING, logger="p2pfl_grpc.security"):
            node = await start_node(GrpcTransport("node-0", "127.0.0.1:0", OPTIONS, insecure="true"))
        await node.transport.stop()

    asyncio.run(scenario())
    assert any("PLAINTEXT" in r.getMessage() for r in caplog.records)


def test_tls_settings_are_checked_before_listening(grpc_certs, tmp_path) -> None:  # noqa: F811
    with pytest.raises(SecurityError, match="DNS name"):
        GrpcTransport("node_0", "127.0.0.1:0", certs_dir=str(grpc_certs["main"]))
    with pytest.raises(SecurityError, match="either flat"):
        GrpcTransport("node-0", "127.0.0.1:0", tls={"certs_dir": "x"}, ca="y")

    async def start(transport: GrpcTransport) -> None:
        await transport.start(None)  # type: ignore[arg-type]

    wrong = GrpcTransport(
        "node-0",
        "127.0.0.1:0",
        ca=str(grpc_certs["main"] / "ca.pem"),
        cert=str(grpc_certs["main"] / "node-1.pem"),
        key=str(grpc_certs["main"] / "node-1.key"),
    )
    with pytest.raises(SecurityError, match="not for node 'node-0'"):
        asyncio.run(start(wrong))
    with pytest.raises(SecurityError, match="cannot read"):
        asyncio.run(start(GrpcTransport("node-0", "127.0.0.1:0", certs_dir=str(tmp_path))))
