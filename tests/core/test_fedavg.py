"""FedAvg: values computed by hand, partial aggregation, dtype rules, errors, conformance."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from p2pfl.aggregation import AggregationError, FedAvg
from p2pfl.parameters import Update
from p2pfl.testing import AggregatorConformance


class TestFedAvgConformance(AggregatorConformance):
    def make_aggregator(self) -> FedAvg:
        return FedAvg()


def update(node: str | set[str], samples: int, round: int = 0, **tensors: list | np.ndarray) -> Update:
    params = {
        name: np.asarray(value, dtype=np.float32) if isinstance(value, list) else value
        for name, value in tensors.items()
    }
    contributors = {node} if isinstance(node, str) else node
    return Update(params, num_samples=samples, contributors=frozenset(contributors), round=round)


def test_weighted_mean_by_hand() -> None:
    a = update("a", 1, w=[[1.0, 2.0], [3.0, 4.0]], b=[0.0])
    b = update("b", 3, w=[[5.0, 6.0], [7.0, 8.0]], b=[4.0])
    result = FedAvg().aggregate([a, b])
    # (1 * a + 3 * b) / 4
    np.testing.assert_array_equal(result.parameters["w"], np.array([[4.0, 5.0], [6.0, 7.0]], np.float32))
    np.testing.assert_array_equal(result.parameters["b"], np.array([3.0], np.float32))
    assert result.num_samples == 4
    assert result.contributors == {"a", "b"}
    assert list(result.parameters) == ["w", "b"]


def test_three_updates_and_round() -> None:
    updates = [update("a", 2, 4, w=[3.0]), update("b", 2, 5, w=[6.0]), update("c", 6, 5, w=[1.0])]
    result = FedAvg().aggregate(updates)
    assert result.parameters["w"][0] == pytest.approx((2 * 3 + 2 * 6 + 6 * 1) / 10)
    assert result.round == 5


def test_partial_aggregation_equals_full() -> None:
    rng = np.random.default_rng(0)
    updates = [update(f"n{i}", 5 + 7 * i, w=rng.normal(size=(3, 4)).astype(np.float32)) for i in range(5)]
    fedavg = FedAvg()
    left, right = fedavg.aggregate(updates[:2]), fedavg.aggregate(updates[2:])
    merged = fedavg.aggregate([left, right])
    whole = fedavg.aggregate(updates)
    assert merged.contributors == whole.contributors == {f"n{i}" for i in range(5)}
    assert merged.num_samples == whole.num_samples == sum(5 + 7 * i for i in range(5))
    np.testing.assert_allclose(merged.parameters["w"], whole.parameters["w"], rtol=1e-6, atol=1e-7)
    # And both equal the float64 weighted mean computed directly.
    expected = sum(u.num_samples * u.parameters["w"].astype(np.float64) for u in updates) / whole.num_samples
    np.testing.assert_allclose(whole.parameters["w"], expected, rtol=1e-6)


def test_float16_with_huge_sample_counts_does_not_overflow() -> None:
    big = 10**12
    a = update("a", big, h=np.array([60000.0, -60000.0, 1.5], np.float16))
    b = update("b", big, h=np.array([60000.0, -60000.0, 2.5], np.float16))
    result = FedAvg().aggregate([a, b])
    assert result.parameters["h"].dtype == np.float16
    np.testing.assert_array_equal(result.parameters["h"], np.array([60000.0, -60000.0, 2.0], np.float16))


def test_bfloat16_keeps_its_dtype() -> None:
    bf16 = ml_dtypes.bfloat16
    a = update("a", 1, h=np.array([1.0, 2.0], bf16))
    b = update("b", 1, h=np.array([3.0, 4.0], bf16))
    result = FedAvg().aggregate([a, b])
    assert result.parameters["h"].dtype == bf16
    np.testing.assert_array_equal(result.parameters["h"].astype(np.float32), [2.0, 3.0])


def test_integer_tensors_are_rounded_not_truncated() -> None:
    a = update("a", 1, n=np.array([1, 10, 0], np.int64))
    b = update("b", 3, n=np.array([2, 20, 0], np.int64))
    result = FedAvg().aggregate([a, b])
    # (1 * 1 + 3 * 2) / 4 = 1.75 -> 2 (truncation would give 1); (10 + 60) / 4 = 17.5 -> 18 (round half to even)
    assert result.parameters["n"].dtype == np.int64
    np.testing.assert_array_equal(result.parameters["n"], [2, 18, 0])


def test_zero_d_and_empty_tensors() -> None:
    a = update("a", 1, s=np.array(2.0, np.float32), e=np.zeros((0, 3), np.float32))
    b = update("b", 1, s=np.array(4.0, np.float32), e=np.zeros((0, 3), np.float32))
    result = FedAvg().aggregate([a, b])
    assert result.parameters["s"].shape == () and result.parameters["s"] == 3.0
    assert result.parameters["e"].shape == (0, 3)


def test_zero_total_samples_is_an_error() -> None:
    with pytest.raises(AggregationError, match="zero samples"):
        FedAvg().aggregate([update("a", 0, w=[1.0]), update("b", 0, w=[2.0])])


def test_duplicate_contributors_are_rejected() -> None:
    with pytest.raises(AggregationError, match=r"aggregated twice.*'b'"):
        FedAvg().aggregate([update({"a", "b"}, 1, w=[1.0]), update({"b", "c"}, 1, w=[2.0])])


def test_no_updates_is_an_error() -> None:
    with pytest.raises(AggregationError, match="at least 1"):
        FedAvg().aggregate([])


def test_mismatched_tensors_are_rejected() -> None:
    with pytest.raises(AggregationError, match="w: shape"):
        FedAvg().aggregate([update("a", 1, w=[1.0]), update("b", 1, w=[1.0, 2.0])])
    with pytest.raises(AggregationError, match="dtype"):
        FedAvg().aggregate([update("a", 1, w=[1.0]), update("b", 1, w=np.array([1.0], np.float64))])


def test_extras_are_averaged_by_samples() -> None:
    a = Update({"w": np.zeros(1, np.float32)}, 1, frozenset({"a"}), 0, extras={"c": {"d": np.array([0.0])}})
    b = Update({"w": np.zeros(1, np.float32)}, 3, frozenset({"b"}), 0, extras={"c": {"d": np.array([4.0])}})
    result = FedAvg().aggregate([a, b])
    np.testing.assert_array_equal(result.extras["c"]["d"], [3.0])
