"""lowrank: Eckart–Young error, energy rule, conv reshaping, pass-through of vectors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from p2pfl.compression import CodecError
from p2pfl.parameters import parameters_equal
from p2pfl_compression.lowrank import LowRank


def roundtrip(codec: LowRank, arrays: dict) -> tuple[dict, dict, dict]:
    encoded, meta = codec.encode(arrays)
    return LowRank().decode(dict(encoded), json.loads(json.dumps(meta))), encoded, meta


def test_fixed_rank_error_is_the_discarded_singular_values():
    x = np.random.default_rng(0).normal(size=(60, 40))
    got, encoded, _ = roundtrip(LowRank(rank=5), {"w": x})
    s = np.linalg.svd(x, compute_uv=False)  # independent: the full spectrum
    assert encoded["w.u"].shape == (60, 5) and encoded["w.v"].shape == (5, 40)
    assert np.isclose(np.linalg.norm(got["w"] - x), np.sqrt(np.sum(s[5:] ** 2)), rtol=1e-9)


@pytest.mark.parametrize("energy", [0.5, 0.8, 0.95])
def test_energy_threshold_picks_the_smallest_rank(energy):
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(80, 8)) @ rng.normal(size=(8, 70)) + 0.05 * rng.normal(size=(80, 70))).astype(np.float32)
    got, encoded, _ = roundtrip(LowRank(energy=energy), {"w": x})
    r = encoded["w.u"].shape[1]
    power = np.cumsum(np.linalg.svd(x.astype(np.float64), compute_uv=False) ** 2)
    assert power[r - 1] >= energy * power[-1] * (1 - 1e-6)
    assert r == 1 or power[r - 2] < energy * power[-1]
    err = np.linalg.norm(got["w"].astype(np.float64) - x)
    assert err <= np.sqrt(1 - energy) * np.linalg.norm(x.astype(np.float64)) * (1 + 1e-4)


def test_conv_kernels_are_reshaped_and_restored():
    x = np.random.default_rng(2).normal(size=(16, 8, 3, 3)).astype(np.float32)
    got, encoded, _ = roundtrip(LowRank(rank=3), {"conv": x})
    assert encoded["conv.u"].shape == (16, 3) and encoded["conv.v"].shape == (3, 72)
    assert got["conv"].shape == x.shape and got["conv"].dtype == np.float32


def test_low_rank_matrices_come_back_and_vectors_pass_through():
    rng = np.random.default_rng(3)
    m = rng.normal(size=(50, 2)) @ rng.normal(size=(2, 60))
    arrays = {"m": m, "b": rng.normal(size=30).astype(np.float32), "s": np.array(1.0), "z": np.zeros((20, 30))}
    got, encoded, _ = roundtrip(LowRank(energy=0.999999), arrays)
    assert encoded["m.u"].shape[1] == 2 and np.allclose(got["m"], m, atol=1e-10)
    assert parameters_equal({"b": arrays["b"], "s": arrays["s"]}, {"b": got["b"], "s": got["s"]})
    assert encoded["z.u"].shape == (20, 0) and np.array_equal(got["z"], arrays["z"])  # rank 0: exact zeros


def test_full_rank_is_sent_whole():
    x = np.random.default_rng(4).normal(size=(10, 10)).astype(np.float32)
    _, encoded, meta = roundtrip(LowRank(rank=8), {"w": x})
    assert meta["tensors"] == {} and np.array_equal(encoded["w"], x)


def test_error_feedback_resends_the_residual():
    x = np.random.default_rng(5).normal(size=(30, 30))
    codec = LowRank(rank=3, error_feedback=True)
    first, _, _ = roundtrip(codec, {"w": x})
    second, _, _ = roundtrip(codec, {"w": np.zeros_like(x)})
    u, s, vt = np.linalg.svd(x - first["w"])
    assert np.allclose(second["w"], (u[:, :3] * s[:3]) @ vt[:3], atol=1e-10)


@pytest.mark.parametrize(
    "kwargs", [{"rank": 0}, {"rank": 2.5}, {"energy": 0}, {"energy": 1.5}, {"rank": 2, "energy": 0.5}]
)
def test_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        LowRank(**kwargs)


def test_corrupt_payloads():
    x = np.random.default_rng(6).normal(size=(40, 30)).astype(np.float32)
    encoded, meta = LowRank(rank=2).encode({"w": x})
    for bad in (
        {"w.u": encoded["w.u"][:-1]},
        {"w.v": encoded["w.v"].T.copy()},
        {"w.u": encoded["w.u"].ravel()},
        {"w.v": encoded["w.v"].astype(np.int32)},
    ):
        with pytest.raises(CodecError):
            LowRank().decode({**encoded, **bad}, meta)
    huge = json.loads(json.dumps(meta))
    huge["tensors"]["w"]["shape"] = [40, 2**38]
    with pytest.raises(CodecError):
        LowRank().decode({**encoded, "w.v": np.zeros((2, 0), np.float32)}, huge)
    with pytest.raises(CodecError):
        LowRank().encode({"w": np.full((4, 4), np.nan, np.float32) * np.eye(4, dtype=np.float32)})
