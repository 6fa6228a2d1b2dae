"""Update codecs: the interface compression plugins implement, and the send-time pipeline."""

from p2pfl.compression.codec import Codec, CodecError, CodecPipeline, EncodedTensors

__all__ = ["Codec", "CodecError", "CodecPipeline", "EncodedTensors"]
