"""Core's protocol conformance suite on the grpc transport, over real sockets."""

from __future__ import annotations

import pytest
from grpc_testkit import OPTIONS, GrpcConformanceBase, grpc_certs  # noqa: F401

from p2pfl_grpc.transport import GrpcTransport

pytestmark = pytest.mark.framework


class TestGrpcPlaintextTcp(GrpcConformanceBase):
    def create_transport(self, node_id: str) -> GrpcTransport:
        return GrpcTransport(node_id, "127.0.0.1:0", OPTIONS, insecure=True)


class TestGrpcMutualTls(GrpcConformanceBase):
    @pytest.fixture(autouse=True)
    def _certs(self, grpc_certs):  # noqa: F811
        self.certs = grpc_certs["main"]

    def create_transport(self, node_id: str) -> GrpcTransport:
        return GrpcTransport(node_id, "127.0.0.1:0", OPTIONS, tls={"certs_dir": str(self.certs)})


class TestGrpcIpv6(GrpcConformanceBase):
    def create_transport(self, node_id: str) -> GrpcTransport:
        return GrpcTransport(node_id, "[::1]:0", OPTIONS, insecure=True)


class TestGrpcUnixSocket(GrpcConformanceBase):
    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path):
        self.folder = tmp_path

    def create_transport(self, node_id: str) -> GrpcTransport:
        return GrpcTransport(node_id, f"unix:{self.folder}/{node_id}.sock", OPTIONS, insecure=True)
