"""sign: ±mean|x| per tensor from packed bits, error feedback, exact zeros."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest

from p2pfl.compression import CodecError, CodecPipeline
from p2pfl_compression.sign import Sign


def roundtrip(codec: Sign, arrays: dict) -> dict:
    encoded, meta = codec.encode(arrays)
    return Sign().decode(dict(encoded), json.loads(json.dumps(meta)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, ml_dtypes.bfloat16])
def test_decodes_to_scaled_signs(dtype):
    x = np.random.default_rng(0).normal(size=(30, 7)).astype(dtype)
    got = roundtrip(Sign(error_feedback=False), {"w": x})["w"]
    scale = np.abs(x.astype(np.float64)).mean()
    expected = np.where(x.astype(np.float64) >= 0, scale, -scale).astype(dtype)
    assert got.dtype == x.dtype and np.array_equal(got, expected)


def test_one_bit_per_entry():
    x = np.random.default_rng(1).normal(size=(1000, 10)).astype(np.float32)
    encoded = CodecPipeline([Sign()]).encode({"w": x}, {"w": np.zeros_like(x)})
    assert encoded.nbytes == 10000 // 8 + 4  # packed bits plus a float32 scale


def test_zeros_are_exact_and_small_tensors_go_whole():
    got = roundtrip(Sign(), {"z": np.zeros(64, np.float32), "s": np.array(-3.0, np.float32)})
    assert not got["z"].any() and got["s"] == -3.0


def test_error_feedback_resends_the_residual():
    x = np.random.default_rng(2).normal(size=256).astype(np.float64)
    codec = Sign()
    first = roundtrip(codec, {"w": x})["w"]
    residual = x - first
    assert np.array_equal(codec.feedback.residual("w"), residual)
    second = roundtrip(codec, {"w": np.zeros_like(x)})["w"]
    scale = np.abs(residual).mean()
    assert np.array_equal(second, np.where(residual >= 0, scale, -scale))
    # with feedback, what was sent over many steps approaches what was given
    total = first + second
    for _ in range(200):
        total += roundtrip(codec, {"w": np.zeros_like(x)})["w"]
    assert np.linalg.norm(total - x) < 0.5 * np.linalg.norm(x - first)


def test_corrupt_payloads():
    x = np.random.default_rng(3).normal(size=100).astype(np.float32)
    encoded, meta = Sign().encode({"w": x})
    for bad in (
        {"w.signs": encoded["w.signs"][:-1]},
        {"w.scale": np.array(-1.0, np.float32)},
        {"w.scale": np.array(np.nan, np.float32)},
        {"w.signs": encoded["w.signs"].astype(np.int8)},
        {"w.scale": np.array([1.0], np.float32)},
    ):
        with pytest.raises(CodecError):
            Sign().decode({**encoded, **bad}, meta)
