"""Robust aggregators on small inputs, against values computed by hand (or by a second,
brute-force method where noted)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from p2pfl.aggregation import AggregationError
from p2pfl.parameters import Update
from p2pfl_aggregators.robust import (
    Bulyan,
    CenteredClipping,
    GeometricMedian,
    Krum,
    Median,
    MultiKrum,
    TrimmedMean,
    WeightedMedian,
)


def upd(i: int, samples: int = 1, dtype: type = np.float32, **params: object) -> Update:
    return Update({k: np.asarray(v, dtype=dtype) for k, v in params.items()}, samples, {f"n{i}"}, 3)


def scalars(values: list[float], samples: list[int] | None = None) -> list[Update]:
    samples = samples or [1] * len(values)
    return [upd(i, s, w=[v]) for i, (v, s) in enumerate(zip(values, samples))]


def w(update: Update) -> list[float]:
    return update.parameters["w"].tolist()


# --------------------------------------------------------------------------- median


def test_median_odd_with_outlier():
    ups = [upd(0, w=[1, 10, -2]), upd(1, w=[3, 0, 7]), upd(2, w=[100, 5, 5])]
    out = Median().aggregate(ups)
    assert w(out) == [3, 5, 5]
    assert out.contributors == {"n0", "n1", "n2"} and out.num_samples == 3 and out.round == 3
    assert out.parameters["w"].dtype == np.float32


def test_median_even_averages_the_middle_pair():
    ups = [upd(0, w=[1, 10, -2]), upd(1, w=[3, 0, 7]), upd(2, w=[100, 5, 5]), upd(3, w=[2, 6, 1])]
    assert w(Median().aggregate(ups)) == [2.5, 5.5, 3.0]


def test_median_ties_and_minimum_boundary():
    assert w(Median().aggregate(scalars([1, 1, 5]))) == [1]
    with pytest.raises(AggregationError, match="median needs at least 3 updates, got 2"):
        Median().aggregate(scalars([1, 2]))
    assert w(Median(f=0).aggregate(scalars([7]))) == [7]
    assert Median(f=2).min_updates == 5


def test_weighted_median_by_samples():
    # sorted values 0, 1, 2 with weights 1, 1, 10: the heavy one holds the weighted median
    assert w(WeightedMedian().aggregate(scalars([0, 1, 2], [1, 1, 10]))) == [2]
    # cumulative weight reaches exactly half at 5: mean of 5 and the next value 9
    assert w(WeightedMedian().aggregate(scalars([9, 0, 5], [2, 1, 1]))) == [7]
    # a zero-weight value is never the median
    assert w(WeightedMedian().aggregate(scalars([0, 50, 9], [1, 0, 1]))) == [4.5]


def test_median_and_equal_weight_weighted_median_match_numpy():
    rng = np.random.default_rng(0)
    for n in (3, 4, 5, 6):
        ups = [upd(i, 7, w=rng.normal(size=20)) for i in range(n)]
        expected = np.median(np.stack([u.parameters["w"].astype(np.float64) for u in ups]), axis=0)
        np.testing.assert_array_equal(WeightedMedian().aggregate(ups).parameters["w"], expected.astype(np.float32))
        np.testing.assert_array_equal(Median().aggregate(ups).parameters["w"], expected.astype(np.float32))


def test_weighted_median_needs_samples():
    with pytest.raises(AggregationError, match="zero samples"):
        WeightedMedian().aggregate(scalars([1, 2, 3], [0, 0, 0]))


# --------------------------------------------------------------------------- trimmed mean


def test_trimmed_mean_drops_k_from_each_side():
    assert w(TrimmedMean(beta=0.2).aggregate(scalars([1, 2, 3, 4, 100]))) == [3]
    assert w(TrimmedMean(beta=0.25).aggregate(scalars([100, 1, 2, 3]))) == [2.5]
    assert w(TrimmedMean(beta=0.2).aggregate(scalars([5, 5, 5, 1, 9]))) == [5]
    # floor(0.2 * 9) = 1 per side: 2..8 remain
    assert w(TrimmedMean(beta=0.2).aggregate(scalars([1, 2, 3, 4, 5, 6, 7, 8, 1000]))) == [5]


def test_trimmed_mean_minimum_is_where_trimming_starts():
    assert TrimmedMean(beta=0.2).min_updates == 5
    assert TrimmedMean(beta=0.1).min_updates == 10
    assert TrimmedMean(beta=0.25).min_updates == 4
    assert TrimmedMean(beta=0.0).min_updates == 1
    with pytest.raises(AggregationError, match="trimmed-mean needs at least 5 updates, got 4"):
        TrimmedMean(beta=0.2).aggregate(scalars([1, 2, 3, 4]))
    with pytest.raises(ValueError, match="beta"):
        TrimmedMean(beta=0.5)


# --------------------------------------------------------------------------- krum family


def test_krum_scores_by_hand():
    # f=1, n=5: 2 nearest neighbours. Squared distances give scores
    # 0: 1+4=5, 1: 1+1=2, 2: 1+4=5, 10: 1+64=65, 11: 1+81=82
    ups = scalars([0, 1, 2, 10, 11])
    assert w(Krum().aggregate(ups)) == [1]
    assert w(MultiKrum().aggregate(ups)) == [(0 + 1 + 2 + 10) / 4]  # m = n - f = 4
    assert w(MultiKrum(m=3).aggregate(ups)) == [1]
    # m=2: scores 2 then a tie at 5 between 0 and 2: the first in canonical order wins
    assert w(MultiKrum(m=2).aggregate(ups)) == [0.5]


def test_krum_tie_goes_to_the_first_update():
    # scores: 0: 1+25, 1: 1+16, 5: 1+16, 6: 1+25 -> tie between 1 and 5
    assert w(Krum().aggregate(scalars([0, 1, 5, 6, 100]))) == [1]
    assert w(Krum().aggregate(scalars([0, 5, 1, 6, 100]))) == [5]


def test_krum_distance_spans_every_learned_tensor():
    # "a" alone would pick update 0 (a tie broken by order); "b" makes update 2 the best
    ups = [upd(i, a=[a], b=[b, 0.0]) for i, (a, b) in enumerate([(0, 9), (0, 0), (0, 4), (0, 5), (0, 30)])]
    out = Krum().aggregate(ups)
    assert out.parameters["a"].tolist() == [0] and out.parameters["b"].tolist() == [4, 0]


def test_krum_returns_the_chosen_update_bitwise():
    rng = np.random.default_rng(1)
    ups = [upd(i, w=rng.normal(size=(3, 4))) for i in range(5)]
    out = Krum().aggregate(ups)
    assert any(np.array_equal(out.parameters["w"], u.parameters["w"]) for u in ups)


def test_krum_minimum_boundary():
    assert Krum(f=1).min_updates == 5 and Krum(f=2).min_updates == 7
    with pytest.raises(AggregationError, match="krum needs at least 5 updates, got 4"):
        Krum().aggregate(scalars([0, 1, 2, 3]))
    assert MultiKrum(f=1, m=6).min_updates == 6
    with pytest.raises(ValueError, match="too low"):
        Krum(f=1, min_updates=4)
    assert Krum(f=1, min_updates=6).min_updates == 6


def test_krum_rejects_outliers():
    values = [1.0, 1.1, 0.9, 1.05, -1000.0, 1e6]
    ups = scalars(values)
    chosen = w(Krum(f=2).aggregate([*ups, upd(9, w=[0.95])]))[0]
    assert 0.9 - 1e-6 <= chosen <= 1.1 + 1e-6
    assert abs(w(MultiKrum(f=1).aggregate(ups[:5]))[0] - 1.0125) < 1e-6


# --------------------------------------------------------------------------- bulyan


def test_bulyan_by_hand():
    # Krum selection (f=1), as worked out in docs/aggregators.md:
    # picks 3, 2, 1, then 0 (tie with 10, first wins), then 10 (tie with -50, first wins);
    # coordinate phase: median of [0, 1, 2, 3, 10] is 2, the beta=3 closest are 1, 2, 3
    ups = scalars([0, 1, 2, 3, 10, 100, -50])
    assert Bulyan().select(ups, ["w"]) == [0, 1, 2, 3, 4]
    assert w(Bulyan().aggregate(ups)) == [2]


def test_bulyan_minimum_boundary():
    assert Bulyan(f=1).min_updates == 7 and Bulyan(f=2).min_updates == 11
    with pytest.raises(AggregationError, match="bulyan needs at least 7 updates, got 6"):
        Bulyan().aggregate(scalars([0, 1, 2, 3, 4, 5]))


def reference_bulyan(points: np.ndarray, f: int) -> np.ndarray:
    """A direct, loop-based transcription of El Mhamdi et al.'s Bulyan (the second method)."""
    remaining = list(range(len(points)))
    selected = []
    while len(selected) < len(points) - 2 * f:
        r = len(remaining)
        k = min(max(r - f - 2, 1), r - 1)
        best, best_score = None, math.inf
        for i in remaining:
            d = sorted(float(np.sum((points[i] - points[j]) ** 2)) for j in remaining if j != i)
            score = sum(d[:k])
            if score < best_score:
                best, best_score = i, score
        selected.append(best)
        remaining.remove(best)
    chosen = points[sorted(selected)]
    beta = len(chosen) - 2 * f
    out = np.empty(points.shape[1])
    for c in range(points.shape[1]):
        column = sorted(chosen[:, c])
        med = float(np.median(column))
        closest = sorted(column, key=lambda v: abs(v - med))[:beta]
        out[c] = sum(closest) / beta
    return out


@pytest.mark.parametrize(("n", "f"), [(7, 1), (9, 1), (11, 2)])
def test_bulyan_matches_a_direct_transcription(n, f):
    rng = np.random.default_rng(n)
    points = rng.normal(size=(n, 6))
    points[-f:] *= 50  # Byzantine ones
    ups = [upd(i, dtype=np.float64, w=p) for i, p in enumerate(points)]
    np.testing.assert_allclose(Bulyan(f=f).aggregate(ups).parameters["w"], reference_bulyan(points, f), rtol=1e-12)


# --------------------------------------------------------------------------- geometric median


def test_geometric_median_of_collinear_points_is_their_median():
    gm = GeometricMedian(tol=1e-12, max_iter=1000)
    assert abs(w(gm.aggregate(scalars([0, 1, 2, 3, 100])))[0] - 2.0) < 1e-4


def test_geometric_median_symmetric_square_with_center():
    corners = [(-1, -1), (-1, 1), (1, -1), (1, 1), (0, 0)]
    assert w(GeometricMedian().aggregate([upd(i, w=p) for i, p in enumerate(corners)])) == [0, 0]


def test_geometric_median_weighted_by_samples():
    # minimize 3|v| + |v - 10|: v = 0; unweighted, two points: anywhere between, from the mean 5
    ups = [upd(0, 3, w=[0.0]), upd(1, 1, w=[10.0]), upd(2, 1, w=[0.0])]
    assert abs(w(GeometricMedian(weighted=True, tol=1e-12, max_iter=500).aggregate(ups))[0]) < 1e-4


def test_geometric_median_matches_direct_minimization():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(3)
    points = rng.normal(size=(7, 3))
    points[6] = [40.0, -30.0, 25.0]
    ups = [upd(i, dtype=np.float64, a=p[:1], b=p[1:]) for i, p in enumerate(points)]
    out = GeometricMedian(tol=1e-14, max_iter=10_000).aggregate(ups)
    got = np.concatenate([out.parameters["a"], out.parameters["b"]])

    def objective(v: np.ndarray) -> float:
        return float(np.linalg.norm(points - v, axis=1).sum())

    best = scipy_optimize.minimize(
        objective,
        np.median(points, axis=0),
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20_000},
    ).x
    np.testing.assert_allclose(got, best, atol=1e-5)
    assert objective(got) <= objective(best) + 1e-9


def test_geometric_median_minimum_boundary():
    with pytest.raises(AggregationError, match="geometric-median needs at least 3 updates, got 2"):
        GeometricMedian().aggregate(scalars([0, 1]))


# --------------------------------------------------------------------------- centered clipping


def test_centered_clipping_one_iteration_by_hand():
    ups = [upd(0, w=[1, 0]), upd(1, w=[0, 1]), upd(2, w=[30, 40])]
    start = {"w": np.zeros(2, np.float32)}
    # [30, 40] has norm 50 > tau=10: clipped to [6, 8]; v = ([1,0] + [0,1] + [6,8]) / 3
    np.testing.assert_allclose(w(CenteredClipping(tau=10).aggregate(ups, start)), [7 / 3, 3], rtol=1e-6)
    # tau=1: [0.6, 0.8]; the unit vectors are on the boundary, unchanged
    np.testing.assert_allclose(w(CenteredClipping(tau=1).aggregate(ups, start)), [1.6 / 3, 1.8 / 3], rtol=1e-6)


def test_centered_clipping_two_iterations_by_hand():
    ups = [upd(0, dtype=np.float64, w=[1, 0]), upd(1, dtype=np.float64, w=[0, 1]), upd(2, dtype=np.float64, w=[30, 40])]
    v = (7 / 3, 3.0)
    moves = [(1 - v[0], 0 - v[1]), (0 - v[0], 1 - v[1]), (30 - v[0], 40 - v[1])]
    clipped = [(x * min(1, 10 / math.hypot(x, y)), y * min(1, 10 / math.hypot(x, y))) for x, y in moves]
    expected = [v[0] + sum(c[0] for c in clipped) / 3, v[1] + sum(c[1] for c in clipped) / 3]
    out = CenteredClipping(tau=10, iterations=2).aggregate(ups, {"w": np.zeros(2)})
    np.testing.assert_allclose(w(out), expected, rtol=1e-12)


def test_centered_clipping_without_start_model_centers_on_the_median():
    ups = [upd(0, dtype=np.float64, w=[1, 0]), upd(1, dtype=np.float64, w=[0, 1]), upd(2, dtype=np.float64, w=[30, 40])]
    # coordinate-wise median [1, 1]; moves [0,-1], [-1,0], [29,39] (norm > 10, clipped)
    norm = math.hypot(29, 39)
    expected = [1 + (0 - 1 + 29 * 10 / norm) / 3, 1 + (-1 + 0 + 39 * 10 / norm) / 3]
    np.testing.assert_allclose(w(CenteredClipping(tau=10).aggregate(ups)), expected, rtol=1e-12)


# --------------------------------------------------------------------------- shared behaviour


ALL_ROBUST = [Median, WeightedMedian, TrimmedMean, Krum, MultiKrum, Bulyan, GeometricMedian, CenteredClipping]


@pytest.mark.parametrize("cls", ALL_ROBUST)
def test_non_finite_updates_are_discarded(cls):
    agg = cls()
    n = agg.min_updates + 1
    ups = [upd(i, w=[1.0 + 0.01 * i, 2.0]) for i in range(n - 1)] + [upd(n - 1, w=[np.nan, np.inf])]
    out = agg.aggregate(ups, {"w": np.array([1.0, 2.0], np.float32)})
    assert np.isfinite(out.parameters["w"]).all()
    assert out.contributors == {f"n{i}" for i in range(n)} and out.num_samples == n
    if agg.min_updates > 1:
        with pytest.raises(AggregationError, match="NaN/inf"):
            agg.aggregate(ups[1:], {"w": np.array([1.0, 2.0], np.float32)})


@pytest.mark.parametrize("cls", ALL_ROBUST)
def test_identical_updates_aggregate_to_themselves(cls):
    agg = cls()
    value = np.array([[1.5, -2.0], [0.25, 8.0]], np.float32)
    ups = [upd(i, w=value) for i in range(agg.min_updates)]
    out = agg.aggregate(ups, {"w": value})
    np.testing.assert_array_equal(out.parameters["w"], value)


@pytest.mark.parametrize("cls", ALL_ROBUST)
def test_rejects_mismatched_and_duplicate_updates(cls):
    agg = cls()
    n = max(agg.min_updates, 2)
    good = [upd(i, w=[1.0, 2.0]) for i in range(n)]
    with pytest.raises(AggregationError, match="shape"):
        agg.aggregate([*good[:-1], upd(n - 1, w=[1.0, 2.0, 3.0])])
    with pytest.raises(AggregationError, match="dtype"):
        agg.aggregate([*good[:-1], upd(n - 1, dtype=np.float64, w=[1.0, 2.0])])
    with pytest.raises(AggregationError, match="twice"):
        agg.aggregate([*good[:-1], upd(0, w=[1.0, 2.0])])


@pytest.mark.parametrize("cls", ALL_ROBUST)
def test_deterministic_across_instances_and_repeats(cls):
    rng = np.random.default_rng(5)
    ups = [upd(i, int(rng.integers(1, 9)), w=rng.normal(size=50), b=rng.normal(size=(2, 3))) for i in range(8)]
    start = {"w": np.zeros(50, np.float32), "b": np.zeros((2, 3), np.float32)}
    digests = {cls().aggregate(ups, start).parameters["w"].tobytes() for _ in range(3)}
    assert len(digests) == 1


def test_empty_and_zero_dimensional_tensors():
    for agg in (Median(), TrimmedMean(), Bulyan(), Krum(), GeometricMedian()):
        ups = [upd(i, w=np.empty((0, 3)), s=float(i)) for i in range(agg.min_updates)]
        out = agg.aggregate(ups)
        assert out.parameters["w"].shape == (0, 3) and out.parameters["s"].shape == ()


def test_parameter_validation_messages():
    for make, pattern in [
        (lambda: Median(f=-1), "f .* must be an integer >= 0"),
        (lambda: Krum(f=True), "integer"),
        (lambda: MultiKrum(m=0), "m must be an integer >= 1"),
        (lambda: GeometricMedian(eps=0), "eps"),
        (lambda: GeometricMedian(weighted="yes"), "weighted"),
        (lambda: CenteredClipping(tau=-1), "tau"),
        (lambda: CenteredClipping(iterations=0), "iterations"),
        (lambda: Median(statistics="running_"), "statistics"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            make()


def test_canonical_order_is_the_only_order_dependence():
    """Apart from exact ties, permuting the updates does not change a robust aggregate:
    bitwise for selections, to rounding for means (whose summation order follows the input).

    (Not Bulyan: its last Krum rounds score over one neighbour, where two mutual nearest
    neighbours always tie, so the canonical order decides by design.)
    """
    rng = np.random.default_rng(9)
    ups = [upd(i, dtype=np.float64, w=rng.normal(size=4)) for i in range(7)]
    orders = [list(p) for p in itertools.islice(itertools.permutations(ups), 0, 40, 7)]
    for agg in (Median(), WeightedMedian(), TrimmedMean(), Krum()):
        assert len({agg.aggregate(p).parameters["w"].tobytes() for p in orders}) == 1, agg.name
    for agg in (MultiKrum(), GeometricMedian()):
        results = [agg.aggregate(p).parameters["w"] for p in orders]
        for r in results[1:]:
            np.testing.assert_allclose(r, results[0], rtol=1e-9)
