"""topk and randomk: what is kept, error feedback, seeding, payload sizes, bad input."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest

from p2pfl.compression import CodecError, CodecPipeline
from p2pfl_compression.sparse import RandomK, TopK, count_for, index_dtype, random_indices


def decode(codec_cls, encoded, meta):
    return codec_cls().decode(dict(encoded), json.loads(json.dumps(meta)))


# ---------------------------------------------------------------------------------- topk


def test_topk_keeps_largest_magnitudes_negative_ones_included():
    x = np.array([0.1, -9.0, 3.0, -0.2, 8.0, 0.0, -7.5, 1.0, 2.0, -2.5, 0.3, 0.4], np.float32)
    encoded, meta = TopK(k=4).encode({"w": x})
    got = decode(TopK, encoded, meta)["w"]
    expected = np.zeros_like(x)
    largest = np.argsort(-np.abs(x))[:4]  # by hand: -9, 8, -7.5, 3
    assert sorted(largest.tolist()) == [1, 2, 4, 6]
    expected[largest] = x[largest]
    assert np.array_equal(got, expected)
    assert encoded["w.indices"].tolist() == [1, 2, 4, 6] and encoded["w.indices"].dtype == np.int32
    assert encoded["w.values"].tolist() == [-9.0, 3.0, 8.0, -7.5]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, ml_dtypes.bfloat16])
def test_topk_fraction_per_tensor(dtype):
    rng = np.random.default_rng(0)
    arrays = {"a": rng.normal(size=(50, 20)).astype(dtype), "b": rng.normal(size=(300,)).astype(dtype)}
    encoded, meta = TopK(k=0.1).encode(arrays)
    got = decode(TopK, encoded, meta)
    for name, x in arrays.items():
        kept = np.flatnonzero(got[name].reshape(-1))
        assert kept.size == round(0.1 * x.size)
        magnitude = np.abs(x.astype(np.float64)).reshape(-1)
        assert magnitude[kept].min() >= np.delete(magnitude, kept).max()  # nothing larger left behind
        assert np.array_equal(got[name].reshape(-1)[kept], x.reshape(-1)[kept])
        assert got[name].dtype == x.dtype


def test_topk_payload_size():
    x = np.random.default_rng(1).normal(size=(1000, 100)).astype(np.float32)
    encoded = CodecPipeline([TopK(k=0.01)]).encode({"w": x}, {"w": np.zeros_like(x)})
    assert encoded.nbytes == 1000 * (4 + 4)  # float32 values + int32 indices


def test_error_feedback_resends_the_residual():
    x = np.random.default_rng(2).normal(size=100).astype(np.float32)
    codec = TopK(k=10)
    sent = []
    for step in range(10):
        encoded, meta = codec.encode({"w": x if step == 0 else np.zeros_like(x)})
        sent.append(decode(TopK, encoded, meta)["w"])
        if step == 0:
            # what was not sent is exactly x with the 10 sent entries zeroed
            residual = x.copy()
            residual[np.argsort(-np.abs(x))[:10]] = 0
            assert np.array_equal(codec.feedback.residual("w"), residual)
        if step == 1:
            expected = np.zeros_like(x)
            top = np.argsort(-np.abs(residual))[:10]
            expected[top] = residual[top]
            assert np.array_equal(sent[1], expected)  # the residual's own top-k goes next
    # every entry went exactly once: the ten payloads add up to x, bit for bit
    assert np.array_equal(np.sum(sent, axis=0), x)
    assert not codec.feedback.residual("w").any()


def test_without_error_feedback_nothing_is_resent():
    x = np.random.default_rng(3).normal(size=100).astype(np.float32)
    codec = TopK(k=10, error_feedback=False)
    codec.encode({"w": x})
    encoded, meta = codec.encode({"w": np.zeros_like(x)})
    assert not decode(TopK, encoded, meta)["w"].any()


def test_error_feedback_is_per_tensor_name_and_per_instance():
    x = np.arange(1, 21, dtype=np.float32)
    node_a, node_b = TopK(k=2), TopK(k=2)
    node_a.encode({"w": x})
    encoded, meta = node_a.encode({"v": np.zeros_like(x)})  # another name: no residual of "w"
    assert not decode(TopK, encoded, meta)["v"].any()
    encoded, meta = node_b.encode({"w": np.zeros_like(x)})  # another node: no residual at all
    assert not decode(TopK, encoded, meta)["w"].any()


def test_small_tensors_go_whole():
    arrays = {"s": np.array(2.0, np.float32), "b": np.arange(5, dtype=np.float32)}
    encoded, meta = TopK(k=3).encode(arrays)  # 3 * (4 + 4) bytes >= 5 * 4: the dense form is smaller
    assert meta["tensors"] == {} and set(encoded) == {"s", "b"}
    encoded, meta = TopK(k=2).encode(arrays)  # 16 < 20: sparse
    assert list(meta["tensors"]) == ["b"]


def test_index_dtype_switches_to_int64_for_huge_tensors():
    assert index_dtype(2**31 - 1) == np.int32 and index_dtype(2**31) == np.int64


def test_count_for():
    assert count_for(0.01, 1000) == 10 and count_for(0.01, 10) == 1 and count_for(25, 10) == 10
    assert count_for(1.0, 7) == 7


@pytest.mark.parametrize("k", [0, -1, 0.0, 1.5, True, "many", float("nan")])
def test_bad_k(k):
    with pytest.raises(ValueError):
        TopK(k=k)


def test_topk_corrupt_payloads():
    x = np.random.default_rng(4).normal(size=200).astype(np.float32)
    encoded, meta = TopK(k=10).encode({"w": x})
    idx = encoded["w.indices"]
    for bad_idx in (idx[::-1].copy(), np.where(idx == idx[3], 200, idx), np.r_[idx[:-1], idx[-2]], -idx - 1):
        with pytest.raises(CodecError):
            TopK().decode({**encoded, "w.indices": bad_idx.astype(np.int32)}, meta)
    with pytest.raises(CodecError):
        TopK().decode({**encoded, "w.indices": idx.astype(np.float32)}, meta)
    with pytest.raises(CodecError):
        TopK().decode({"w.values": encoded["w.values"]}, meta)
    huge = json.loads(json.dumps(meta))
    huge["tensors"]["w"]["shape"] = [2**40]
    with pytest.raises(CodecError, match="bytes"):
        TopK().decode(dict(encoded), huge)


# ---------------------------------------------------------------------------------- randomk


def test_randomk_sends_values_only_and_receiver_finds_the_indices():
    x = np.random.default_rng(5).normal(size=(40, 25)).astype(np.float32) + 10  # no zeros
    encoded, meta = RandomK(k=0.1, seed=1, error_feedback=False).encode({"w": x})
    assert set(encoded) == {"w.values"} and encoded["w.values"].nbytes == 100 * 4
    got = decode(RandomK, encoded, meta)["w"]
    kept = np.flatnonzero(got)
    assert kept.size == 100
    assert np.array_equal(got.reshape(-1)[kept], x.reshape(-1)[kept])
    assert np.array_equal(kept, random_indices(meta["seed"], 0, 1000, 100))


def test_randomk_is_seeded():
    x = np.random.default_rng(6).normal(size=500).astype(np.float32)
    a, meta_a = RandomK(k=0.05, seed=3).encode({"w": x})
    b, meta_b = RandomK(k=0.05, seed=3).encode({"w": x})
    _, meta_c = RandomK(k=0.05, seed=4).encode({"w": x})
    assert meta_a == meta_b and np.array_equal(a["w.values"], b["w.values"])
    assert meta_a["seed"] != meta_c["seed"]


def test_random_indices_are_stable():
    # pinned: PCG64 raw output is stable across numpy versions; a change here breaks mixed-version networks
    assert random_indices(123, 0, 20, 5).tolist() == [3, 4, 6, 10, 12]
    assert random_indices(123, 1, 20, 5).tolist() != [3, 4, 6, 10, 12]


def test_randomk_picks_uniformly():
    n, count, draws = 200, 20, 1000
    codec = RandomK(k=count, seed=9, error_feedback=False)
    hits = np.zeros(n)
    x = np.ones(n, np.float32)
    for _ in range(draws):
        encoded, meta = codec.encode({"w": x})
        hits += decode(RandomK, encoded, meta)["w"] != 0
    # each index is kept with probability p = count / n; binomial standard deviation per index
    p = count / n
    sd = np.sqrt(draws * p * (1 - p))
    assert hits.sum() == draws * count
    assert np.abs(hits - draws * p).max() < 5 * sd


def test_randomk_error_feedback_and_rescale():
    x = np.arange(1, 101, dtype=np.float64)
    codec = RandomK(k=10, seed=0)
    encoded, meta = codec.encode({"w": x})
    first = decode(RandomK, encoded, meta)["w"]
    assert np.array_equal(codec.feedback.residual("w"), x - first)
    encoded, meta = codec.encode({"w": np.zeros_like(x)})
    second = decode(RandomK, encoded, meta)["w"]
    chosen = random_indices(meta["seed"], 0, 100, 10)
    expected = np.zeros_like(x)
    expected[chosen] = (x - first)[chosen]  # the residual at the new random positions
    assert np.array_equal(second, expected)
    scaled, meta = RandomK(k=10, seed=0, rescale=True, error_feedback=False).encode({"w": x})
    got = decode(RandomK, scaled, meta)["w"]
    assert np.allclose(got[got != 0], x[got != 0] * 10)


def test_randomk_corrupt_metadata():
    x = np.random.default_rng(7).normal(size=300).astype(np.float32)
    encoded, meta = RandomK(k=0.1, seed=2).encode({"w": x})
    for key, value in (("count", 31), ("count", 0), ("count", 300), ("stream", -1), ("shape", [3000000000000])):
        bad = json.loads(json.dumps(meta))
        bad["tensors"]["w"][key] = value
        with pytest.raises(CodecError):
            RandomK().decode(dict(encoded), bad)
    for seed in (-1, 2**64, "1", None):
        with pytest.raises(CodecError):
            RandomK().decode(dict(encoded), {**meta, "seed": seed})
