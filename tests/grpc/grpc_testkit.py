"""Shared helpers of the grpc tests: certificates made once per session, transport factories."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pfl.communication.transport import TransportOptions
from p2pfl.testing.conformance.protocol import Node, ProtocolConformance, Recorder

OPTIONS = TransportOptions(send_timeout=60.0, connect_timeout=20.0)
NODE_IDS = [f"node-{i}" for i in range(5)]


@pytest.fixture(scope="session")
def grpc_certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``main``: a CA with certificates for node-0..node-4, ``mallory`` and ``admin``; ``other``: a second CA."""
    from p2pfl_grpc.certs import create_certificates

    main = tmp_path_factory.mktemp("pki-main")
    create_certificates(main, {name: ["localhost", "127.0.0.1", "::1"] for name in [*NODE_IDS, "mallory", "admin"]})
    other = tmp_path_factory.mktemp("pki-other")
    create_certificates(other, {name: ["localhost", "127.0.0.1"] for name in NODE_IDS}, ca_name="another CA")
    return {"main": main, "other": other}


async def start_node(transport) -> Node:
    """Start ``transport`` with a fresh :class:`Recorder` (inside the running loop)."""
    events = Recorder()
    await transport.start(events)
    return Node(transport, events)


class GrpcConformanceBase(ProtocolConformance):
    """Crash = abort the server without goodbye; raw bytes go through the real Send call."""

    async def crash(self, transport) -> None:
        await transport.abort()

    async def send_raw(self, sender, receiver, data: bytes) -> None:
        await sender.send_raw(receiver.node_id, data)
