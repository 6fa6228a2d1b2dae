"""The statistics rule on every aggregator: buffers are averaged, integers stay integers."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from p2pfl.parameters import Update
from p2pfl.plugins.manager import PluginManager
from p2pfl_aggregators import plugin
from p2pfl_aggregators.base import DEFAULT_STATISTICS, split_names
from p2pfl_aggregators.drift import DELTA_KEY
from p2pfl_aggregators.robust import Krum, Median

#: how each aggregator weighs updates when averaging statistics
SAMPLE_WEIGHTED = {"weighted-median", "fedavgm", "fedadagrad", "fedadam", "fedyogi", "fedprox", "scaffold"}


def mixed_updates(n: int) -> list[Update]:
    updates = []
    for i in range(n):
        params = {
            "w": np.array([1.0 + 0.1 * i, -2.0], np.float32),
            "h": np.array([0.5 * i], ml_dtypes.bfloat16),
            "bn.running_mean": np.array([float(i)], np.float32),
            "bn.num_batches_tracked": np.array(10 + i, np.int64),
            "mask": np.array([i % 2 == 0, True]),
        }
        extras = {DELTA_KEY: {"w": np.zeros(2, np.float32), "h": np.zeros(1, np.float32)}}
        updates.append(Update(params, i + 1, {f"n{i}"}, 2, extras=extras))
    return updates


@pytest.fixture(scope="module")
def registry():
    pm = PluginManager(discover=False)
    pm.register(plugin, name="p2pfl-aggregators")
    return pm.registry("aggregators")


@pytest.mark.parametrize("name", sorted(plugin.AGGREGATORS))
def test_mixed_float_and_integer_tensors(registry, name):
    agg = registry.load(name)()
    n = max(agg.min_updates, 7)
    ups = mixed_updates(n)
    out = agg.aggregate(ups, dict(ups[0].parameters))
    for key, value in ups[0].parameters.items():
        assert out.parameters[key].dtype == value.dtype and out.parameters[key].shape == value.shape, key
    weights = np.arange(1, n + 1, dtype=np.float64) if name in SAMPLE_WEIGHTED else np.ones(n)
    weights /= weights.sum()
    counters = 10 + np.arange(n)
    assert int(out.parameters["bn.num_batches_tracked"]) == int(np.rint(weights @ counters))
    assert out.parameters["bn.running_mean"][0] == pytest.approx(weights @ np.arange(n), rel=1e-6)
    assert list(out.parameters) == list(ups[0].parameters)
    assert out.contributors == {f"n{i}" for i in range(n)} and out.num_samples == n * (n + 1) // 2


def test_default_rule_and_override():
    params = {
        "conv.weight": np.zeros(2, np.float32),
        "bn.running_var": np.zeros(2, np.float32),
        "bn.num_batches_tracked": np.array(0),
        "dense/moving_mean": np.zeros(1, np.float32),
        "batch_stats/mean": np.zeros(1, np.float32),
        "z": np.zeros(1, np.complex64),
    }
    assert split_names(params, DEFAULT_STATISTICS) == (
        ["conv.weight"],
        ["bn.running_var", "bn.num_batches_tracked", "dense/moving_mean", "batch_stats/mean", "z"],
    )
    assert split_names(params, ["conv"])[0] == ["bn.running_var", "dense/moving_mean", "batch_stats/mean"]


def test_statistics_skip_robust_selection_unless_overridden():
    # three honest updates and one whose running_mean is poisoned; the median of the
    # statistic would ignore it, the default (uniform) average does not
    ups = [
        Update({"w": np.array([1.0]), "running_mean": np.array([v])}, 1, {f"n{i}"}, 1)
        for i, v in enumerate([1.0, 2.0, 3.0, 1000.0])
    ]
    assert Median().aggregate(ups).parameters["running_mean"].tolist() == [251.5]
    assert Median(statistics=[]).aggregate(ups).parameters["running_mean"].tolist() == [2.5]
    # Krum's distances ignore statistics: the poisoned statistic does not affect the choice
    ups = [
        Update({"w": np.array([w]), "running_mean": np.array([s])}, 1, {f"n{i}"}, 1)
        for i, (w, s) in enumerate([(0.0, 1e6), (1.0, 0.0), (2.0, 0.0), (10.0, 0.0), (11.0, 0.0)])
    ]
    assert Krum().aggregate(ups).parameters["w"].tolist() == [1.0]
    assert Krum(statistics=[]).aggregate(ups).parameters["w"].tolist() == [2.0]
