"""float16: the codec conformance suite, a case checked by hand, and a network using it."""

from __future__ import annotations

import numpy as np
from p2pfl_example import plugin
from p2pfl_example.codec import Float16

from p2pfl.compression import CodecPipeline
from p2pfl.testing import CodecConformance


class TestFloat16Conformance(CodecConformance):
    def make_codec(self) -> Float16:
        return Float16()

    max_relative_error = 1e-3  # float16 keeps 11 significant bits: 2**-11 is about 4.9e-4


def test_casts_floats_and_restores_dtypes() -> None:
    arrays = {
        "w": np.array([0.5, -1.25, 1e6], np.float32),  # 1e6 is beyond float16: clipped to 65504
        "d": np.array([0.1], np.float64),
        "h": np.array([3.0], np.float16),  # already 16-bit: untouched
        "idx": np.array([1, 2], np.int32),  # e.g. indices of an earlier codec: untouched
    }
    codec = Float16()
    encoded, meta = codec.encode(arrays)
    assert meta == {"cast": {"w": "float32", "d": "float64"}}
    assert encoded["w"].dtype == np.float16 and encoded["h"] is arrays["h"] and encoded["idx"] is arrays["idx"]
    assert codec.metrics() == {"saved_bytes": 3 * 2 + 1 * 6}  # float32 -> 16 saves 2 bytes, float64 -> 16 saves 6
    decoded = Float16().decode(encoded, meta)
    np.testing.assert_array_equal(decoded["w"], np.array([0.5, -1.25, 65504.0], np.float32))
    assert decoded["d"].dtype == np.float64 and abs(decoded["d"][0] - 0.1) < 1e-4


def test_update_error_is_relative_to_the_change() -> None:
    # a delta codec: the big model is exact, only the small change is rounded
    base = {"w": np.full(4, 1000.0, np.float32)}
    model = {"w": base["w"] + np.float32(0.001)}
    pipeline = CodecPipeline([Float16()])
    decoded = pipeline.decode(pipeline.encode(model, base), base)
    assert np.max(np.abs(decoded["w"] - model["w"])) < 1e-4  # float16 of 1000.001 itself would be off by 0.5


def test_three_nodes_learn_through_it(p2pfl_register_plugin, memory_cluster, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("P2PFL_EXAMPLE_CSV", str(tmp_path / "rounds.csv"))
    p2pfl_register_plugin(plugin, name="p2pfl-example")
    cluster = memory_cluster(3, codecs=[{"name": "float16"}])
    assert cluster.learn(rounds=2)
    assert cluster.agree()
    for node in cluster.nodes:
        assert node.history[-1]["accuracy"] > 0.8
        assert node.history[-1]["float16.saved_bytes"] > 0  # the codec's metrics join the round's
