"""norm-clipped-mean: the aggregator conformance suite, cases computed by hand, and a network."""

from __future__ import annotations

import numpy as np
import pytest
from p2pfl_example import plugin
from p2pfl_example.aggregator import NormClippedMean

from p2pfl.parameters import Update
from p2pfl.testing import AggregatorConformance


class TestNormClippedMeanConformance(AggregatorConformance):
    def make_aggregator(self) -> NormClippedMean:
        return NormClippedMean()


class TestFixedThresholdConformance(AggregatorConformance):
    def make_aggregator(self) -> NormClippedMean:
        return NormClippedMean(max_norm=0.5, min_updates=3)


def update(values: list[float], node: str, samples: int = 1) -> Update:
    return Update({"w": np.array(values, np.float32)}, samples, frozenset({node}), round=1)


START = {"w": np.zeros(2, np.float32)}


def test_long_changes_are_clipped_to_max_norm() -> None:
    # a moves by (3, 4), norm 5 -> clipped to norm 2: (1.2, 1.6); b moves by (0.6, 0.8), norm 1: kept
    result = NormClippedMean(max_norm=2).aggregate([update([3, 4], "a"), update([0.6, 0.8], "b")], START)
    np.testing.assert_allclose(result.parameters["w"], [0.9, 1.2], rtol=1e-6)  # ((1.2 + 0.6) / 2, (1.6 + 0.8) / 2)
    assert result.num_samples == 2 and result.contributors == {"a", "b"}


def test_default_threshold_is_the_median_norm() -> None:
    # norms 5, 1 and 2: the median is 2, so only a's change is shortened, to (1.2, 1.6)
    updates = [update([3, 4], "a"), update([0.6, 0.8], "b"), update([0, 2], "c", samples=2)]
    result = NormClippedMean().aggregate(updates, START)
    expected = (np.array([1.2, 1.6]) + np.array([0.6, 0.8]) + 2 * np.array([0.0, 2.0])) / 4
    np.testing.assert_allclose(result.parameters["w"], expected, rtol=1e-6)


def test_changes_are_measured_from_the_starting_model() -> None:
    start = {"w": np.array([10, 10], np.float32)}
    result = NormClippedMean(max_norm=1).aggregate([update([13, 14], "a")], start)
    np.testing.assert_allclose(result.parameters["w"], [10.6, 10.8], rtol=1e-6)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "1"])
def test_rejects_bad_max_norm(bad) -> None:
    with pytest.raises(ValueError, match="max_norm"):
        NormClippedMean(max_norm=bad)


def test_three_nodes_learn_with_it(p2pfl_register_plugin, memory_cluster, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("P2PFL_EXAMPLE_CSV", str(tmp_path / "rounds.csv"))  # the plugin's observer writes there
    p2pfl_register_plugin(plugin, name="p2pfl-example")
    cluster = memory_cluster(3, aggregator="norm-clipped-mean", aggregator_options={"max_norm": 5.0})
    assert cluster.learn(rounds=2)
    assert cluster.agree()
    assert all(node.history[-1]["accuracy"] > 0.8 for node in cluster.nodes)
