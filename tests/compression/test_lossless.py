"""zlib and lzma: exact round trips, level honoured, bounded decompression."""

from __future__ import annotations

import json
import lzma
import tracemalloc
import zlib

import ml_dtypes
import numpy as np
import pytest

from p2pfl.compression import CodecError, CodecPipeline
from p2pfl.parameters import parameters_equal
from p2pfl_compression._common import DecodeLimits
from p2pfl_compression.lossless import Lzma, Zlib

CODECS = [Zlib, Lzma]


def mixed_model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "w": np.round(rng.normal(size=(64, 32)), 2).astype(np.float32),  # compressible
        "noise": rng.normal(size=500),
        "bf": rng.normal(size=(8, 8)).astype(ml_dtypes.bfloat16),
        "half": np.zeros(300, np.float16),
        "c": (rng.normal(size=10) + 1j).astype(np.complex64),
        "steps": np.array(12, np.int64),
        "idx": np.arange(0, 4000, 4, dtype=np.int32),
        "mask": np.ones(100, bool),
        "scalar": np.array(0.25, np.float64),
        "empty": np.zeros((0, 5), np.float32),
        "big_endian": np.arange(50, dtype=">f8"),
    }


@pytest.mark.parametrize("cls", CODECS)
@pytest.mark.parametrize("concat", [False, True])
def test_exact_roundtrip_direct(cls, concat):
    arrays = mixed_model()
    encoded, meta = cls(concat=concat).encode(arrays)
    decoded = cls().decode(dict(encoded), json.loads(json.dumps(meta)))
    assert set(decoded) == set(arrays)
    for name, value in arrays.items():
        got = decoded[name]
        assert got.shape == value.shape and np.array_equal(got, value), name
        assert got.dtype.newbyteorder("=") == value.dtype.newbyteorder("="), name  # byte order normalised


@pytest.mark.parametrize("cls", CODECS)
def test_exact_roundtrip_through_pipeline(cls):
    params = {k: v for k, v in mixed_model().items() if k != "big_endian"}
    pipeline = CodecPipeline([cls()])
    encoded = pipeline.encode(params)
    assert parameters_equal(pipeline.decode(encoded), params)
    assert encoded.nbytes < sum(a.nbytes for a in params.values())


def test_zlib_level_is_honoured():
    data = {"w": np.round(np.random.default_rng(1).normal(size=20000), 1).astype(np.float32)}
    raw = data["w"].tobytes()
    sizes = {}
    for level in (1, 6, 9):
        encoded, _ = Zlib(level=level).encode(data)
        assert encoded["w"].tobytes() == zlib.compress(raw, level)
        sizes[level] = encoded["w"].nbytes
    assert sizes[9] <= sizes[6] <= sizes[1]
    encoded, meta = Zlib(level=0).encode(data)  # "stored" is larger than the raw bytes: sent as is
    assert meta["tensors"] == {} and encoded["w"] is data["w"]


def test_lzma_level_is_honoured():
    data = {"w": np.round(np.random.default_rng(2).normal(size=20000), 1).astype(np.float32)}
    for level in (0, 6):
        encoded, _ = Lzma(level=level).encode(data)
        expected = lzma.compress(data["w"].tobytes(), format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE, preset=level)
        assert encoded["w"].tobytes() == expected


# the allowance covers the decompressor's own state (LZMA preset 6: an 8 MiB dictionary), far below 50 MB
@pytest.mark.parametrize(
    "cls, compress, allowance", [(Zlib, zlib.compress, 1_000_000), (Lzma, lzma.compress, 12_000_000)]
)
def test_decompression_bomb_is_bounded(cls, compress, allowance):
    bomb = np.frombuffer(compress(bytes(50_000_000)), np.uint8)  # 50 MB of zeros in a few kB
    meta = {"v": 1, "tensors": {"w": {"dtype": "float32", "shape": [10], "nbytes": 40}}}
    tracemalloc.start()
    try:
        with pytest.raises(CodecError, match="declared 40 bytes"):
            cls().decode({"w": bomb}, meta)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < allowance + 2 * bomb.nbytes


@pytest.mark.parametrize("cls", CODECS)
def test_declared_sizes_are_checked_before_decompressing(cls):
    encoded, meta = cls().encode({"w": np.zeros(1000, np.float32)})
    limited = cls(limits=DecodeLimits(max_tensor_bytes=1000, max_total_bytes=10_000))
    with pytest.raises(CodecError, match="limit"):
        limited.decode(dict(encoded), meta)
    assert cls(limits={"max_tensor_bytes": 4000}).decode(dict(encoded), meta)["w"].shape == (1000,)
    for entry in (
        {"dtype": "float32", "shape": [1000], "nbytes": 3999},  # size does not match dtype/shape
        {"dtype": "float64", "shape": [1000], "nbytes": 4000},
        {"dtype": "object", "shape": [1000], "nbytes": 4000},
        {"dtype": "float32", "shape": [2**40, 2**40], "nbytes": 2**82},
        {"dtype": "float32", "shape": [1000], "nbytes": -1},
    ):
        with pytest.raises(CodecError):
            cls().decode(dict(encoded), {"v": 1, "tensors": {"w": entry}})


@pytest.mark.parametrize("cls", CODECS)
def test_corrupt_streams(cls):
    x = np.round(np.random.default_rng(3).normal(size=1000), 1).astype(np.float32)
    encoded, meta = cls().encode({"w": x})
    blob = encoded["w"]
    for bad in (
        blob[: blob.size // 2],
        np.concatenate([blob, np.frombuffer(b"junk", np.uint8)]),
        np.zeros_like(blob),
        blob[::-1].copy(),
    ):
        with pytest.raises(CodecError):
            cls().decode({"w": bad}, meta)
    short = {"v": 1, "tensors": {"w": {"dtype": "float32", "shape": [1001], "nbytes": 4004}}}
    with pytest.raises(CodecError):
        cls().decode({"w": blob}, short)


@pytest.mark.parametrize("level", [-2, 10, 1.5, True, "9"])
def test_bad_levels(level):
    with pytest.raises(ValueError):
        Zlib(level=level)
    with pytest.raises(ValueError):
        Lzma(level=level if level != -2 else -1)
