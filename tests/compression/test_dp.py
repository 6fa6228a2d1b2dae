"""dp: exact clipping, noise statistics, seeding, and the (ε, δ) it reports."""

from __future__ import annotations

import math

import numpy as np
import pytest

from p2pfl.compression import CodecError, CodecPipeline
from p2pfl_compression.dp import GaussianDP


def global_norm(arrays: dict) -> float:
    return math.sqrt(sum(float(np.sum(a.astype(np.float64) ** 2)) for a in arrays.values()))


def update(scale: float, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(size=(40, 30)) * scale, "b": rng.normal(size=30) * scale, "s": np.array(scale)}


@pytest.mark.parametrize("scale", [0.01, 0.1, 1.0, 50.0])
def test_norm_after_clipping_is_exactly_min_norm_c(scale):
    arrays = update(scale)
    norm = global_norm(arrays)
    clip = 1.5
    out, _ = GaussianDP(clip=clip, noise_multiplier=0).encode(arrays)
    assert math.isclose(global_norm(out), min(norm, clip), rel_tol=1e-12)
    if norm <= clip:  # nothing to clip: bit for bit the same
        assert all(np.array_equal(out[k], arrays[k]) for k in arrays)
    else:  # one factor for the whole update: the direction is kept
        factor = clip / norm
        assert all(np.allclose(out[k], arrays[k] * factor, rtol=1e-12, atol=0) for k in arrays)


def test_clipping_float32_updates_through_the_pipeline():
    rng = np.random.default_rng(1)
    params = {"w": rng.normal(size=(100, 10)).astype(np.float32), "n": np.array(3, np.int64)}
    base = {"w": np.zeros_like(params["w"]), "n": params["n"]}
    pipeline = CodecPipeline([GaussianDP(clip=2.0, noise_multiplier=0)])
    decoded = pipeline.decode(pipeline.encode(params, base), base)
    assert math.isclose(float(np.linalg.norm(decoded["w"].astype(np.float64))), 2.0, rel_tol=1e-6)  # float32 rounding
    assert decoded["n"] == 3


def test_noise_statistics_match_sigma():
    clip, z, n = 2.0, 0.75, 400_000
    sigma = z * clip
    out, _ = GaussianDP(clip=clip, noise_multiplier=z, seed=11).encode({"w": np.zeros(n)})
    noise = out["w"]
    # standard errors: of the mean sigma/sqrt(n), of the standard deviation sigma/sqrt(2n)
    assert abs(noise.mean()) < 5 * sigma / math.sqrt(n)
    assert abs(noise.std() - sigma) < 5 * sigma / math.sqrt(2 * n)
    # fourth moment of a Gaussian: 3 sigma^4 (the shape, not only the scale)
    assert abs(np.mean(noise**4) / sigma**4 - 3) < 0.05


def test_noise_is_added_after_clipping():
    arrays = {"w": np.full(100_000, 1.0)}  # norm 316 >> C
    out, _ = GaussianDP(clip=1.0, noise_multiplier=1.0, seed=0).encode(arrays)
    residual = out["w"] - arrays["w"] / math.sqrt(100_000)
    assert abs(residual.std() - 1.0) < 5 / math.sqrt(2 * 100_000)


def test_seeded_per_node():
    arrays = {"w": np.zeros(1000)}
    a, _ = GaussianDP(seed=1).encode(arrays)
    b, _ = GaussianDP(seed=1).encode(arrays)
    c, _ = GaussianDP(seed=2).encode(arrays)
    assert np.array_equal(a["w"], b["w"]) and not np.array_equal(a["w"], c["w"])
    codec = GaussianDP(seed=1)
    first, _ = codec.encode(arrays)
    second, _ = codec.encode(arrays)
    assert not np.array_equal(first["w"], second["w"])  # fresh noise at every release


def test_metrics_report_epsilon_for_the_releases_so_far():
    z, delta, alpha = 1.2, 1e-5, 8.0
    codec = GaussianDP(noise_multiplier=z, delta=delta, orders=[alpha])
    assert codec.metrics() == {"epsilon": 0.0, "delta": delta, "releases": 0.0}
    for _ in range(5):
        codec.encode(update(1.0))
    # by hand: 5 releases of RDP alpha / (2 z^2), converted at the single order alpha
    rdp = 5 * alpha / (2 * z**2)
    eps = rdp + math.log((alpha - 1) / alpha) - (math.log(delta) + math.log(alpha)) / (alpha - 1)
    metrics = codec.metrics()
    assert metrics["releases"] == 5.0 and metrics["delta"] == delta
    assert math.isclose(metrics["epsilon"], eps, rel_tol=1e-12)
    pipeline = CodecPipeline([codec])
    assert pipeline.metrics()["dp.epsilon"] == metrics["epsilon"]


def test_no_noise_means_no_privacy_and_nothing_to_release_costs_nothing():
    codec = GaussianDP(noise_multiplier=0)
    codec.encode({})
    assert codec.metrics()["epsilon"] == 0.0
    codec.encode({"w": np.ones(3)})
    assert codec.metrics()["epsilon"] == math.inf


def test_complex_tensors_are_refused_rather_than_sent_without_noise():
    with pytest.raises(CodecError, match="complex"):
        GaussianDP().encode({"w": np.ones(3), "z": np.ones(3, np.complex64)})


def test_parameters_accept_yaml_strings_and_reject_nonsense():
    assert GaussianDP(delta="1e-5").target_delta == 1e-5  # YAML 1.1 reads 1e-5 as a string
    for kwargs in (
        {"clip": 0},
        {"clip": -1},
        {"noise_multiplier": -0.1},
        {"delta": 0},
        {"delta": 1},
        {"sample_rate": 0},
        {"sample_rate": 1.5},
        {"clip": "wide"},
    ):
        with pytest.raises(ValueError):
            GaussianDP(**kwargs)
    assert GaussianDP.delta is True  # the class flag is not shadowed by the δ parameter
