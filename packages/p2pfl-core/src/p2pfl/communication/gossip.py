"""Gossip on top of any transport: broadcast with a hop limit and a bounded duplicate filter.

A broadcast message carries a *covered* set: the nodes its sender knows will receive it
(itself and its neighbours). A relay forwards only to neighbours outside that set and adds
its own neighbours, so in a full graph nothing is relayed and on a ring each edge carries a
message about once. Relays forward the message unchanged except for ``sender``, ``ttl`` and
``covered`` (a new immutable copy), whatever its kind: nodes relay kinds they do not know.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from p2pfl.communication.transport import PeerUnavailableError, Transport
from p2pfl.wire.message import Message

log = logging.getLogger(__name__)


class DuplicateFilter:
    """Remembers the last ``capacity`` message ids."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, msg_id: str) -> bool:
        """Record ``msg_id``; False if it was already known."""
        if msg_id in self._ids:
            return False
        self._ids[msg_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True


class Gossiper:
    """Sends, broadcasts and relays messages of one node."""

    def __init__(self, node_id: str, transport: Transport, ttl: int, dedup_capacity: int) -> None:
        self.node_id = node_id
        self.transport = transport
        self.ttl = ttl
        self.seen = DuplicateFilter(dedup_capacity)
        self._tasks: set[asyncio.Task[None]] = set()

    def broadcast(self, message: Message) -> None:
        """Send a new message to every neighbour, to be relayed ``ttl`` hops."""
        self.seen.add(message.msg_id)
        neighbours = self.transport.neighbors()
        msg = message.with_fields(sender=self.node_id, ttl=self.ttl, covered=frozenset([self.node_id, *neighbours]))
        for peer in neighbours:
            self._spawn(peer, msg)

    def send(self, peer: str, message: Message) -> None:
        """Send to one neighbour (not relayed)."""
        self._spawn(peer, message.with_fields(sender=self.node_id, ttl=0))

    def receive(self, message: Message) -> bool:
        """Filter duplicates and relay; returns True if the message is new for this node."""
        if not self.seen.add(message.msg_id):
            return False
        if message.ttl > 0:
            targets = [p for p in self.transport.neighbors() if p not in message.covered and p != message.sender]
            if targets:
                relayed = message.relayed(self.node_id, message.covered | {self.node_id, *targets})
                for peer in targets:
                    self._spawn(peer, relayed)
        return True

    def _spawn(self, peer: str, message: Message) -> None:
        # one task per send: a slow peer never delays the others
        task = asyncio.get_running_loop().create_task(self._send(peer, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, peer: str, message: Message) -> None:
        try:
            await asyncio.wait_for(self.transport.send(peer, message), self.transport.options.send_timeout)
        except (PeerUnavailableError, asyncio.TimeoutError) as exc:
            log.info("%s: could not send %s to %s: %s", self.node_id, message.kind, peer, exc or "timeout")
        except Exception:
            log.exception("%s: sending %s to %s failed", self.node_id, message.kind, peer)

    async def drain(self) -> None:
        """Wait for sends in flight (used before a clean stop)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.transport.options.send_timeout)
