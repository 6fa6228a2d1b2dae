"""quantize: stated error bounds, exact constants, dtype restoration, casts, bad input."""

from __future__ import annotations

import itertools
import json

import ml_dtypes
import numpy as np
import pytest

from p2pfl.compression import CodecError, CodecPipeline
from p2pfl.parameters import parameters_equal
from p2pfl_compression.quantize import Quantize

BF16 = np.dtype(ml_dtypes.bfloat16)
FLOATS = [np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16), BF16]
# (dtype, scheme) -> (Q, levels): the step is amax / Q (symmetric) or (max - min) / levels (asymmetric)
STEPS = {"int8": (127, 255), "uint8": (127, 255), "int16": (32767, 65535)}


def roundtrip(codec: Quantize, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    encoded, meta = codec.encode(arrays)
    return Quantize().decode(dict(encoded), json.loads(json.dumps(meta)))


def rounding(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Half an ulp of ``x`` in ``dtype`` (what restoring the tensor's dtype may add), generously."""
    info = ml_dtypes.finfo(dtype)
    return float(info.eps) * np.abs(x) + float(info.smallest_subnormal)


# int16 does not shrink 16-bit floats: those are sent unchanged (tested below)
@pytest.mark.parametrize(
    "qdtype, scheme, granularity, dtype",
    [
        c
        for c in itertools.product(
            ["int8", "uint8", "int16"], ["symmetric", "asymmetric"], ["tensor", "channel"], FLOATS
        )
        if not (c[0] == "int16" and c[3].itemsize <= 2)
    ],
)
def test_integer_error_bound(qdtype, scheme, granularity, dtype):
    rng = np.random.default_rng(0)
    # rows of very different scales: per-channel ranges matter
    x = (rng.normal(size=(6, 40)) * np.array([1e-3, 0.1, 1, 5, 30, 200])[:, None] + 0.3).astype(dtype)
    got = roundtrip(Quantize(dtype=qdtype, scheme=scheme, granularity=granularity), {"w": x})["w"]
    assert got.dtype == dtype and got.shape == x.shape
    x64, got64 = x.astype(np.float64), got.astype(np.float64)
    groups = x64 if granularity == "channel" else x64.reshape(1, -1)
    top, levels = STEPS[qdtype]
    if scheme == "symmetric":
        step = np.abs(groups).max(axis=1) / top
    else:
        step = (groups.max(axis=1) - groups.min(axis=1)) / levels
    step = np.broadcast_to(step[:, None], groups.shape).reshape(x.shape)
    bound = step / 2 * (1 + 1e-9) + rounding(x64, dtype)
    assert (np.abs(got64 - x64) <= bound).all(), float(np.max(np.abs(got64 - x64) / bound))


@pytest.mark.parametrize(
    "qdtype, scheme, granularity",
    list(itertools.product(["int8", "uint8", "int16"], ["symmetric", "asymmetric"], ["tensor", "channel"])),
)
@pytest.mark.parametrize("dtype", FLOATS)
def test_constants_and_zeros_are_exact(qdtype, scheme, granularity, dtype):
    rows = np.array([0.0, 0.1, -3.7, 1e-3, 12345.678, -0.0, 2.0, 1 / 3])[:, None]
    arrays = {
        "zeros": np.zeros((8, 16), dtype),
        "constant": np.full((8, 16), -0.1234567, dtype),
        "rows": np.broadcast_to(rows, (8, 16)).astype(dtype),  # constant per channel
        "positive": np.full((100,), 7.77, dtype),
    }
    got = roundtrip(Quantize(dtype=qdtype, scheme=scheme, granularity=granularity), arrays)
    for name in ("zeros", "constant", "positive"):
        assert parameters_equal({name: arrays[name]}, {name: got[name]}), name
    if granularity == "channel":
        # value-exact (a -0.0 row may come back as +0.0)
        assert got["rows"].dtype == dtype and np.array_equal(got["rows"], arrays["rows"])


def test_each_tensor_restored_to_its_own_dtype_and_codes_are_narrow():
    rng = np.random.default_rng(1)
    arrays = {f"t{i}": rng.normal(size=(32, 8)).astype(d) for i, d in enumerate(FLOATS)}
    encoded, meta = Quantize(bits=8).encode(arrays)
    for name in arrays:
        assert encoded[f"{name}.q"].dtype == np.int8
        assert encoded[f"{name}.amax"].dtype == arrays[name].dtype  # an element of the tensor: exact
    decoded = Quantize().decode(encoded, meta)
    assert {n: a.dtype for n, a in decoded.items()} == {n: a.dtype for n, a in arrays.items()}


def test_pipeline_passes_integers_and_restores_order():
    rng = np.random.default_rng(2)
    params = {
        "w": rng.normal(size=(20, 20)).astype(np.float32),
        "steps": np.array(41, np.int64),
        "b": rng.normal(size=(20,)).astype(BF16),
        "mask": np.array([True, False]),
        "s": np.array(1.5, np.float64),
        "e": np.zeros((0,), np.float32),
    }
    pipeline = CodecPipeline([Quantize(dtype="uint8", scheme="asymmetric")])
    decoded = pipeline.decode(pipeline.encode(params))
    assert list(decoded) == list(params)
    assert parameters_equal(
        {k: params[k] for k in ("steps", "mask", "s", "e")}, {k: decoded[k] for k in ("steps", "mask", "s", "e")}
    )
    assert all(decoded[k].dtype == params[k].dtype and decoded[k].shape == params[k].shape for k in params)


def test_payload_shrinks_about_4x_for_float32():
    x = np.random.default_rng(3).normal(size=(256, 256)).astype(np.float32)
    encoded = CodecPipeline([Quantize(bits=8)]).encode({"w": x})
    assert encoded.nbytes == x.size + 4  # int8 codes plus one float32 amax


def test_small_or_not_narrower_tensors_are_sent_unchanged():
    arrays = {"scalar": np.array(0.3, np.float32), "half": np.ones(64, np.float16) * 0.3}
    encoded, meta = Quantize(bits=16).encode(arrays)
    assert meta["tensors"] == {}
    assert parameters_equal(encoded, arrays)


@pytest.mark.parametrize("target, unit", [("float16", 2.0**-11), ("bfloat16", 2.0**-8)])
def test_casts_round_to_nearest(target, unit):
    rng = np.random.default_rng(4)
    x = (rng.normal(size=4000) * 10.0 ** rng.uniform(-3, 3, 4000)).astype(np.float32)
    got = roundtrip(Quantize(dtype=target), {"w": x})["w"]
    assert got.dtype == np.float32
    smallest = float(ml_dtypes.finfo(np.dtype(target) if target == "float16" else BF16).smallest_subnormal)
    err = np.abs(got.astype(np.float64) - x)
    assert (err <= unit * np.abs(x) + smallest / 2).all()


def test_float16_cast_saturates_and_keeps_nan_and_inf():
    x = np.array([1e6, -1e6, np.nan, np.inf, -np.inf, 1.0], np.float32)
    got = roundtrip(Quantize(dtype="float16"), {"w": x})["w"]
    assert got[0] == 65504 and got[1] == -65504
    assert np.isnan(got[2]) and got[3] == np.inf and got[4] == -np.inf and got[5] == 1.0


def test_non_finite_values_cannot_be_quantized_to_integers():
    with pytest.raises(CodecError, match="NaN or infinite"):
        Quantize(bits=8).encode({"w": np.array([1.0, np.nan] * 10, np.float32)})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bits": 4},
        {"dtype": "int4"},
        {"bits": 8, "dtype": "int16"},
        {"scheme": "affine"},
        {"granularity": "row"},
        {"bits": True},
    ],
)
def test_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        Quantize(**kwargs)


def test_bad_metadata_and_arrays():
    x = np.random.default_rng(5).normal(size=(10, 10)).astype(np.float32)
    encoded, meta = Quantize(bits=8, granularity="channel").encode({"w": x})
    with pytest.raises(CodecError):
        Quantize().decode({**encoded, "w.q": encoded["w.q"].astype(np.int16)}, meta)
    with pytest.raises(CodecError):
        Quantize().decode({**encoded, "w.amax": encoded["w.amax"][:3]}, meta)
    with pytest.raises(CodecError):
        Quantize().decode({**encoded, "w.amax": np.full(10, np.inf, np.float32)}, meta)
    bad = json.loads(json.dumps(meta))
    bad["tensors"]["w"]["shape"] = [2**30, 2**30]
    with pytest.raises(CodecError):
        Quantize().decode(dict(encoded), bad)
