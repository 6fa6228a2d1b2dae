"""The ``memory`` transport: nodes of one process talking through a :class:`MemoryNetwork` object.

It behaves like a network transport: messages go through the binary wire encoding (unless
``encode_messages`` is off), delivery is asynchronous, a crashed node is reported to its
neighbours as a failure, and sending to a node that is gone raises. There is no process-wide
registry: each :class:`MemoryNetwork` is an independent simulated network.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from typing import Any

from p2pfl.communication.transport import PeerUnavailableError, Transport, TransportHandler, TransportOptions
from p2pfl.wire.encoding import WireError, decode_message, encode_message
from p2pfl.wire.message import Message

log = logging.getLogger(__name__)


class MemoryNetwork:
    """A simulated network: addresses → live memory transports. Thread-safe."""

    def __init__(self) -> None:
        self._nodes: dict[str, MemoryTransport] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self.messages_sent = 0
        self.bytes_sent = 0

    def new_address(self) -> str:
        return f"mem://{next(self._ids)}"

    def _attach(self, transport: MemoryTransport) -> str:
        with self._lock:
            address = transport.listen_address or self.new_address()
            if address in self._nodes:
                raise OSError(f"address {address} is already in use")
            self._nodes[address] = transport
            return address

    def _detach(self, address: str) -> None:
        with self._lock:
            self._nodes.pop(address, None)

    def lookup(self, address: str) -> MemoryTransport | None:
        with self._lock:
            return self._nodes.get(address)

    def kill(self, address: str) -> None:
        """Crash the node at ``address``: no goodbye, neighbours see a failure."""
        transport = self.lookup(address)
        if transport is not None:
            transport._crash()

    def inject(self, address: str, data: bytes, sender_id: str) -> None:
        """Deliver raw bytes to a node as if ``sender_id`` sent them (for tests of hostile input)."""
        transport = self.lookup(address)
        if transport is None:
            raise PeerUnavailableError(f"no node at {address}")
        transport._post(transport._receive, data, sender_id)


class MemoryTransport(Transport):
    """Transport over a :class:`MemoryNetwork` (pass ``network=`` as a protocol option)."""

    name = "memory"

    def __init__(
        self,
        node_id: str,
        address: str = "",
        options: TransportOptions | None = None,
        *,
        network: MemoryNetwork | None = None,
        **params: Any,
    ) -> None:
        super().__init__(node_id, address, options, **params)
        if network is None:
            raise ValueError("the memory transport needs a MemoryNetwork (protocol option 'network')")
        self.network = network
        self._address = ""
        self._handler: TransportHandler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._peers: dict[str, MemoryTransport] = {}
        self._alive = False

    @property
    def address(self) -> str:
        return self._address

    async def start(self, handler: TransportHandler) -> str:
        self._handler = handler
        self._loop = asyncio.get_running_loop()
        self._address = self.network._attach(self)
        self._alive = True
        return self._address

    async def stop(self) -> None:
        if not self._alive:
            return
        self._alive = False
        self.network._detach(self._address)
        for peer in list(self._peers.values()):
            peer._post(peer._peer_gone, self.node_id, "left", False)
        self._peers.clear()

    def _crash(self) -> None:
        if not self._alive:
            return
        self._alive = False
        self.network._detach(self._address)
        for peer in list(self._peers.values()):
            peer._post(peer._peer_gone, self.node_id, "connection lost", True)
        self._peers.clear()

    async def connect(self, address: str) -> str:
        peer = self.network.lookup(address)
        if peer is None or not peer._alive or peer is self:
            raise PeerUnavailableError(f"no node listening at {address}")
        if peer.node_id in self._peers:
            return peer.node_id
        self._peers[peer.node_id] = peer
        peer._post(peer._peer_joined, self)
        assert self._handler is not None
        self._handler.on_peer_connected(peer.node_id, peer.address)
        return peer.node_id

    async def disconnect(self, peer_id: str) -> None:
        peer = self._peers.pop(peer_id, None)
        if peer is not None:
            peer._post(peer._peer_gone, self.node_id, "disconnected", False)
            assert self._handler is not None
            self._handler.on_peer_disconnected(peer_id, "disconnected", False)

    async def send(self, peer_id: str, message: Message) -> None:
        peer = self._peers.get(peer_id)
        if peer is None or not peer._alive:
            self._peers.pop(peer_id, None)
            if self._handler is not None and peer is not None:
                self._handler.on_peer_disconnected(peer_id, "send failed: node is gone", True)
            raise PeerUnavailableError(f"{peer_id} is not a live neighbour of {self.node_id}")
        payload: Message | bytes = message
        if self.options.encode_messages:
            payload = encode_message(message)
            size = len(payload)
        else:  # what the encoding would cost, without paying for it
            size = message.model.nbytes if message.model is not None else 0
        self.bytes_sent += size
        self.messages_sent += 1
        self.network.bytes_sent += size
        self.network.messages_sent += 1
        peer._post(peer._receive, payload, self.node_id)

    def neighbors(self) -> list[str]:
        return sorted(self._peers)

    # ------------------------------------------------------------------ receiving side

    def _post(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on this transport's loop, from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the node is gone
            loop.call_soon_threadsafe(fn, *args)

    def _peer_joined(self, peer: MemoryTransport) -> None:
        if not self._alive:
            return
        self._peers[peer.node_id] = peer
        assert self._handler is not None
        self._handler.on_peer_connected(peer.node_id, peer.address)

    def _peer_gone(self, peer_id: str, reason: str, failed: bool) -> None:
        if self._peers.pop(peer_id, None) is not None and self._handler is not None:
            self._handler.on_peer_disconnected(peer_id, reason, failed)

    def _receive(self, payload: Message | bytes, sender_id: str) -> None:
        if not self._alive or self._handler is None:
            return
        try:
            message = decode_message(payload, self.options.limits) if isinstance(payload, bytes) else payload
        except WireError as exc:
            log.warning("%s: dropped a malformed message from %s: %s", self.node_id, sender_id, exc)
            return
        if message.sender != sender_id:  # one node cannot speak for another
            log.warning(
                "%s: dropped a message from %s claiming to be sent by %s", self.node_id, sender_id, message.sender
            )
            return
        self._handler.on_message(message)
