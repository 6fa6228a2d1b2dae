"""Transports (plugin kind ``protocols``), gossip, and the in-memory network."""

from p2pfl.communication.transport import (
    PeerUnavailableError,
    Transport,
    TransportError,
    TransportHandler,
    TransportOptions,
)

__all__ = ["PeerUnavailableError", "Transport", "TransportError", "TransportHandler", "TransportOptions"]
