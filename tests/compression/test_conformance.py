"""Every codec, in several configurations, passes the p2pfl.testing codec conformance suite."""

from __future__ import annotations

from p2pfl.compression import Codec
from p2pfl.testing import CodecConformance
from p2pfl_compression.dp import GaussianDP
from p2pfl_compression.lossless import Lzma, Zlib
from p2pfl_compression.lowrank import LowRank
from p2pfl_compression.quantize import Quantize
from p2pfl_compression.sign import Sign
from p2pfl_compression.sparse import RandomK, TopK


class TestQuantizeInt8(CodecConformance):
    max_relative_error = 0.02

    def make_codec(self) -> Codec:
        return Quantize(bits=8)


class TestQuantizeUint8AsymmetricChannel(CodecConformance):
    max_relative_error = 0.02

    def make_codec(self) -> Codec:
        return Quantize(dtype="uint8", scheme="asymmetric", granularity="channel")


class TestQuantizeInt16Asymmetric(CodecConformance):
    max_relative_error = 1e-3

    def make_codec(self) -> Codec:
        return Quantize(bits=16, scheme="asymmetric")


class TestQuantizeFloat16(CodecConformance):
    max_relative_error = 1e-3

    def make_codec(self) -> Codec:
        return Quantize(dtype="float16")


class TestQuantizeBfloat16(CodecConformance):
    max_relative_error = 1e-2

    def make_codec(self) -> Codec:
        return Quantize(dtype="bfloat16")


class TestTopK(CodecConformance):
    def make_codec(self) -> Codec:
        return TopK(k=0.05)


class TestTopKCount(CodecConformance):
    def make_codec(self) -> Codec:
        return TopK(k=3, error_feedback=False)


class TestRandomK(CodecConformance):
    def make_codec(self) -> Codec:
        return RandomK(k=0.1, seed=7)


class TestSign(CodecConformance):
    def make_codec(self) -> Codec:
        return Sign()


class TestLowRankEnergy(CodecConformance):
    def make_codec(self) -> Codec:
        return LowRank(energy=0.5)


class TestLowRankRank(CodecConformance):
    def make_codec(self) -> Codec:
        return LowRank(rank=2, error_feedback=True)


class TestDP(CodecConformance):
    def make_codec(self) -> Codec:
        return GaussianDP(clip=1.0, noise_multiplier=0.5, seed=3)


class TestZlib(CodecConformance):
    def make_codec(self) -> Codec:
        return Zlib(level=9)


class TestZlibConcat(CodecConformance):
    def make_codec(self) -> Codec:
        return Zlib(level=1, concat=True)


class TestLzma(CodecConformance):
    def make_codec(self) -> Codec:
        return Lzma(level=1)


class TestLzmaConcat(CodecConformance):
    def make_codec(self) -> Codec:
        return Lzma(level=6, concat=True)
