"""p2pfl-grpc's hook implementations (entry point ``p2pfl-grpc``).

Only lazy ``"module:attr"`` strings and a light click command are registered here, so
discovering plugins never imports grpc or cryptography.
"""

from __future__ import annotations

from typing import Any

from p2pfl import hookimpl


@hookimpl
def p2pfl_register_protocols(register: Any) -> None:
    register(
        "grpc",
        "p2pfl_grpc.transport:GrpcTransport",
        description="gRPC over TCP or Unix sockets; TLS / mutual TLS; streamed models of any size",
    )


@hookimpl
def p2pfl_register_commands(cli: Any) -> None:
    from p2pfl_grpc.cli import certs, node

    cli.add_command(certs)
    cli.add_command(node)
