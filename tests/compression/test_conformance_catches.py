"""The codec conformance suite fails codecs that break its rules."""

from __future__ import annotations

import numpy as np
import pytest

from p2pfl.compression import Codec
from p2pfl.testing import CodecConformance


class Identity(Codec):
    name = "identity"
    lossless = True

    def encode(self, arrays):
        return dict(arrays), {"v": 1}

    def decode(self, arrays, meta):
        if meta.get("v") != 1:
            from p2pfl.compression import CodecError

            raise CodecError("bad version")
        return dict(arrays)


class CrashesOnBadMeta(Identity):
    def decode(self, arrays, meta):
        return {n: a.reshape(meta["shape"]) for n, a in arrays.items()}  # KeyError / TypeError on bad meta

    def encode(self, arrays):
        return dict(arrays), {"shape": -1}


class ClaimsLossless(Identity):
    def encode(self, arrays):
        return {n: a.astype(np.float16).astype(a.dtype) if a.dtype.kind == "f" else a for n, a in arrays.items()}, {
            "v": 1
        }


class MutatesInput(Identity):
    def encode(self, arrays):
        for a in arrays.values():
            if a.dtype == np.float32 and a.size:
                a[...] = 0
        return dict(arrays), {"v": 1}


class NeedsSenderState(Identity):
    lossless = False

    def __init__(self):
        self.scale = None

    def encode(self, arrays):
        self.scale = 2.0
        return {n: a * 2 if a.dtype == np.float64 else a for n, a in arrays.items()}, {"v": 1}

    def decode(self, arrays, meta):
        scale = self.scale or 1.0
        return {n: a / scale if a.dtype == np.float64 else a for n, a in arrays.items()}


def suite(codec_cls):
    class Suite(CodecConformance):
        def make_codec(self):
            return codec_cls()

    return Suite()


def test_a_correct_codec_passes():
    s = suite(Identity)
    for check in ("test_roundtrip_update", "test_corrupt_meta", "test_no_mutation", "test_stateless_decode"):
        getattr(s, check)()


@pytest.mark.parametrize(
    "codec_cls, check, rule",
    [
        (CrashesOnBadMeta, "test_corrupt_meta", "codec.corrupt-meta"),
        (ClaimsLossless, "test_roundtrip_full_model", "codec.lossless"),
        (MutatesInput, "test_no_mutation", "codec.no-mutation"),
        (NeedsSenderState, "test_stateless_decode", "codec.stateless-decode"),
    ],
)
def test_broken_codecs_fail_with_the_rule(codec_cls, check, rule):
    with pytest.raises(pytest.fail.Exception, match=rule):
        getattr(suite(codec_cls), check)()
