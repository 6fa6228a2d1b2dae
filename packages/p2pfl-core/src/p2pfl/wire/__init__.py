"""Messages and their binary wire encoding (protobuf; never pickle)."""

from p2pfl.wire.encoding import WireError, WireLimits, decode_message, encode_message
from p2pfl.wire.message import NO_ROUND, Message, ModelPayload

__all__ = ["NO_ROUND", "Message", "ModelPayload", "WireError", "WireLimits", "decode_message", "encode_message"]
