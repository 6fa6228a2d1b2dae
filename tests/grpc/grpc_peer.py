"""A grpc node in its own OS process, driven by the process tests (and the transfer benchmark).

Prints one JSON line per event on stdout. Messages it understands:
  model  → replies "digest" (sha256 of the tensors' names and bytes) and "echo" (the same model back)
  train  → holds its event loop for args[0] seconds (a training step that never yields), then "trained"
  quit   → stops cleanly and exits
With --exit-on-leave it exits once its first neighbour is gone.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import time

import numpy as np

from p2pfl.communication.transport import TransportOptions
from p2pfl.wire.message import Message, ModelPayload
from p2pfl_grpc.transport import GrpcTransport


def digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name, array in arrays.items():
        h.update(name.encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class Peer:
    def __init__(self, transport: GrpcTransport, exit_on_leave: bool) -> None:
        self.transport = transport
        self.exit_on_leave = exit_on_leave
        self.done = asyncio.Event()
        self.tasks: set[asyncio.Task] = set()

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def on_message(self, message: Message) -> None:
        emit("message", kind=message.kind, sender=message.sender, args=list(message.args))
        me = self.transport.node_id
        if message.kind == "model" and message.model is not None:
            model = message.model
            self._spawn(
                self._reply(
                    message.sender,
                    [
                        Message(kind="digest", origin=me, args=(digest(model.tensors.arrays),)),
                        Message(kind="echo", origin=me, model=ModelPayload(model.tensors, model.num_samples, (me,))),
                    ],
                )
            )
        elif message.kind == "train":
            time.sleep(float(message.args[0]))  # a step that holds the loop: keepalive must not need it
            self._spawn(self._reply(message.sender, [Message(kind="trained", origin=me)]))
        elif message.kind == "quit":
            self.done.set()

    async def _reply(self, peer: str, messages: list[Message]) -> None:
        for m in messages:
            await self.transport.send(peer, m)

    def on_peer_connected(self, peer_id: str, address: str) -> None:
        emit("connected", peer=peer_id, address=address)

    def on_peer_disconnected(self, peer_id: str, reason: str, failed: bool) -> None:
        emit("disconnected", peer=peer_id, reason=reason, failed=failed)
        if self.exit_on_leave:
            self.done.set()


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--id", required=True)
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--certs")
    parser.add_argument("--connect")
    parser.add_argument("--keepalive", type=float, default=15.0)
    parser.add_argument("--exit-on-leave", action="store_true")
    args = parser.parse_args()
    security = {"certs_dir": args.certs} if args.certs else {"insecure": True}
    transport = GrpcTransport(
        args.id,
        args.listen,
        TransportOptions(send_timeout=120, connect_timeout=30),
        keepalive_time=args.keepalive,
        keepalive_timeout=args.keepalive * 2,
        **security,
    )
    peer = Peer(transport, args.exit_on_leave)
    emit("listening", address=await transport.start(peer))
    if args.connect:
        emit("joined", peer=await transport.connect(args.connect))
    await peer.done.wait()
    await transport.stop()
    emit("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
