"""Operator commands to a running ``p2pfl node`` daemon, over its grpc port (the Control call).

Commands (JSON in, JSON out):

* ``status`` — id, address, status, round, members, neighbours, the last rounds' metrics;
* ``start_learning`` — ``rounds``, ``epochs``, ``trainset_size``, ``seed`` (defaults: the
  ``training`` section and ``seed`` of the node's config); the node gossips the start to all;
* ``stop_learning`` — stops the running experiment on every node.

Who may command: under mutual TLS, any holder of a certificate of the network's CA (a node,
or an operator certificate made with ``p2pfl certs DIR admin``) — the same nodes that could
already start learning by gossip. Without mutual TLS anyone who reaches the port can; run the
daemon with ``--no-control`` to refuse all commands.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from p2pfl.node.node import Node
from p2pfl_grpc.addresses import parse_address
from p2pfl_grpc.proto import node_service_pb2 as pb

SERVICE = "p2pfl.grpc.v1.NodeService"


class ControlError(RuntimeError):
    """A command failed or the node could not be reached (the text says why)."""


class NodeControl:
    """Executes commands on ``node`` (called on the node's event loop by the transport)."""

    def __init__(self, node: Node, cfg: Mapping[str, Any]) -> None:
        self.node, self.cfg = node, cfg

    async def __call__(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        handler = {"status": self.status, "start_learning": self.start_learning, "stop_learning": self.stop}.get(name)
        if handler is None:
            raise ControlError(f"unknown command {name!r}; commands: status, start_learning, stop_learning")
        return await handler(**args)

    async def status(self) -> dict[str, Any]:
        node = self.node
        return {
            "node": node.id,
            "address": node.address,
            "status": node.status,
            "round": node.round,
            "experiment": node.plan.id if node.plan else None,
            "members": sorted(node.members),
            "neighbors": node.transport.neighbors(),
            "history": node.history[-5:],
        }

    async def start_learning(
        self,
        rounds: int | None = None,
        epochs: int | None = None,
        trainset_size: int | None = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        training = self.cfg["training"]
        experiment = await self.node.astart_learning(
            int(rounds if rounds is not None else training["rounds"]),
            int(epochs if epochs is not None else training["epochs"]),
            trainset_size if trainset_size is not None else training["trainset_size"],
            int(seed if seed is not None else self.cfg["seed"]),
        )
        return {"experiment": experiment, "members": sorted(self.node.members)}

    async def stop(self) -> dict[str, Any]:
        await self.node.astop_learning()
        return {"status": self.node.status}


def _channel(address: str, certs_dir: str | None, name: str | None) -> grpc.aio.Channel:
    target = parse_address(address)
    if certs_dir is None:
        return grpc.aio.insecure_channel(str(target))
    folder = Path(certs_dir)
    who = name or "admin"
    try:
        creds = grpc.ssl_channel_credentials(
            (folder / "ca.pem").read_bytes(), (folder / f"{who}.key").read_bytes(), (folder / f"{who}.pem").read_bytes()
        )
    except OSError as exc:
        raise ControlError(f"cannot read the TLS files of {who!r} in {folder}: {exc.strerror}") from None
    options = [("grpc.ssl_target_name_override", "localhost")] if target.is_unix else []
    return grpc.aio.secure_channel(str(target), creds, options=options)


async def send_command(
    address: str,
    name: str,
    args: Mapping[str, Any] | None = None,
    *,
    certs_dir: str | None = None,
    as_name: str | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Send one command to the node at ``address``; returns its JSON result.

    Args:
        certs_dir: folder of ``p2pfl certs`` (TLS); ``None`` for a plaintext node.
        as_name: whose certificate to present (``<as_name>.pem``/``.key`` in ``certs_dir``; default ``admin``).
    """
    channel = _channel(address, certs_dir, as_name)
    call = channel.unary_unary(
        f"/{SERVICE}/Control",
        request_serializer=pb.Command.SerializeToString,
        response_deserializer=pb.Reply.FromString,
    )
    try:
        reply = await call(pb.Command(name=name, args_json=json.dumps(dict(args or {}))), timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        raise ControlError(f"{address}: {exc.code().name}: {exc.details()}") from None
    finally:
        await channel.close()
    if not reply.ok:
        raise ControlError(f"{address}: {reply.error}")
    result: dict[str, Any] = json.loads(reply.result_json or "{}")
    return result
