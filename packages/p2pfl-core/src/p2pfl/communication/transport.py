"""The transport interface (plugin kind ``protocols``).

A transport moves :class:`~p2pfl.wire.message.Message` objects between directly connected
nodes and reports membership changes; gossip (relaying with a hop limit and a duplicate
filter) is built on top of it by :class:`~p2pfl.communication.gossip.Gossiper`, so every
transport gets it for free.

All coroutines run on the owning node's event loop, and the transport calls its
:class:`TransportHandler` on that same loop. Handler methods must not block.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from p2pfl.wire.encoding import DEFAULT_LIMITS, WireLimits
from p2pfl.wire.message import Message


class TransportError(Exception):
    """Base class of transport errors."""


class PeerUnavailableError(TransportError):
    """The peer is not connected, unreachable, or failed while sending."""


class TransportHandler(Protocol):
    """What a transport reports to its node (called on the node's event loop)."""

    def on_message(self, message: Message) -> None:
        """A message arrived from a direct neighbour (``message.sender``)."""

    def on_peer_connected(self, peer_id: str, address: str) -> None:
        """A neighbour connected (either side initiated)."""

    def on_peer_disconnected(self, peer_id: str, reason: str, failed: bool) -> None:
        """A neighbour is gone: ``failed`` is True for a crash/timeout, False for a clean leave."""


@dataclass(frozen=True)
class TransportOptions:
    """Common transport settings (a node's settings object fills them in)."""

    #: seconds a single send may take before the peer is considered failed
    send_timeout: float = 60.0
    #: seconds to wait for the handshake of a new connection
    connect_timeout: float = 10.0
    #: run every message through the binary wire encoding (memory transport; always on for networks)
    encode_messages: bool = True
    limits: WireLimits = DEFAULT_LIMITS


class Transport(abc.ABC):
    """Point-to-point messaging between a node and its neighbours.

    Construction never does I/O; :meth:`start` binds and returns the address peers can dial.

    Args:
        node_id: the owning node's identity (distinct from its address).
        address: where to listen (transport-specific syntax).
        options: common options.
        **params: transport-specific options from the experiment's ``network.protocol_options``.
    """

    name: ClassVar[str] = "transport"

    def __init__(self, node_id: str, address: str, options: TransportOptions | None = None, **params: Any) -> None:
        self.node_id = node_id
        self.listen_address = address
        self.options = options or TransportOptions()
        self.params = params
        #: bytes and messages this transport put on the wire (for the run's metrics)
        self.bytes_sent = 0
        self.messages_sent = 0

    @property
    @abc.abstractmethod
    def address(self) -> str:
        """The address peers use to reach this node (valid after :meth:`start`)."""

    @abc.abstractmethod
    async def start(self, handler: TransportHandler) -> str:
        """Start listening; returns the advertised address."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Leave cleanly: tell neighbours, close connections, release everything. Idempotent."""

    @abc.abstractmethod
    async def connect(self, address: str) -> str:
        """Connect to the node at ``address`` (both sides become neighbours); returns its id."""

    @abc.abstractmethod
    async def disconnect(self, peer_id: str) -> None:
        """Drop the connection to a neighbour (it sees a clean leave)."""

    @abc.abstractmethod
    async def send(self, peer_id: str, message: Message) -> None:
        """Deliver ``message`` to a neighbour; raises :class:`PeerUnavailableError`.

        A failed send also reports the peer through ``on_peer_disconnected(..., failed=True)``.
        """

    @abc.abstractmethod
    def neighbors(self) -> list[str]:
        """Ids of the currently connected neighbours."""
