"""Byzantine-robust aggregators.

All of them treat each update as a point (its learned tensors; see :mod:`p2pfl_aggregators.base`
for the statistics rule), ignore ``num_samples`` unless they are explicitly sample-weighted
(a Byzantine node can claim any sample count), and break ties by the canonical order of the
updates (the first one wins), so every node computes the same aggregate bitwise.

An update holding NaN or infinity in a learned tensor is certainly faulty: it is discarded
(with a warning) before aggregation, and the remaining updates must still number at least
``min_updates``. The result's ``contributors`` and ``num_samples`` still cover every input,
so the workflow sees the round as complete.
"""

from __future__ import annotations

import abc
import logging
import math
from collections.abc import Sequence

import numpy as np

from p2pfl.aggregation import AggregationError
from p2pfl.parameters import Parameters, Update
from p2pfl_aggregators import ops
from p2pfl_aggregators.base import (
    PackageAggregator,
    check_float,
    check_int,
    check_same_parameters,
    combine,
    sample_weights,
)

log = logging.getLogger(__name__)


class RobustAggregator(PackageAggregator):
    """Common flow: validate, discard non-finite updates, robust part, average the statistics."""

    supports_partial = False
    #: weigh updates by ``num_samples`` (robust part and statistics); otherwise uniformly
    sample_weighted: bool = False

    def aggregate(self, updates: Sequence[Update], global_parameters: Parameters | None = None) -> Update:
        learned, stats = self.prepare(updates)
        kept = self.discard_non_finite(updates, learned)
        weights = sample_weights(kept) if self.sample_weighted else [1.0] * len(kept)
        params = self.robust(kept, learned, weights, global_parameters)
        params.update(self.average(kept, stats, weights))
        return combine(updates, params)

    def discard_non_finite(self, updates: Sequence[Update], names: Sequence[str]) -> list[Update]:
        finite = [all(np.isfinite(u.parameters[n]).all() for n in names) for u in updates]
        kept = [u for u, ok in zip(updates, finite) if ok]
        if len(kept) < len(updates):
            bad = sorted(c for u, ok in zip(updates, finite) if not ok for c in u.contributors)
            log.warning("%s: discarding updates with NaN/inf values from %s", self.name, bad)
            if len(kept) < self.min_updates:
                raise AggregationError(
                    f"{self.name} needs at least {self.min_updates} finite updates; "
                    f"{len(updates) - len(kept)} of {len(updates)} hold NaN/inf (from {bad})"
                )
        return kept

    @abc.abstractmethod
    def robust(
        self,
        updates: Sequence[Update],
        names: Sequence[str],
        weights: Sequence[float],
        global_parameters: Parameters | None,
    ) -> Parameters:
        """The aggregated learned tensors ``names``, each in its input dtype."""


def tolerance_f(f: int) -> int:
    return check_int("f (the number of Byzantine updates tolerated)", f, 0)


# --------------------------------------------------------------------------- coordinate-wise


class CoordinateWise(RobustAggregator):
    """Aggregators applied independently to every coordinate of every learned tensor."""

    def robust(
        self,
        updates: Sequence[Update],
        names: Sequence[str],
        weights: Sequence[float],
        global_parameters: Parameters | None,
    ) -> Parameters:
        out = {}
        for name in names:
            arrays = [u.parameters[name] for u in updates]
            values = ops.columnwise(arrays, lambda rows: self.coordinate(rows, weights))
            out[name] = ops.cast_like(values, arrays[0])
        return out

    @abc.abstractmethod
    def coordinate(self, rows: np.ndarray, weights: Sequence[float]) -> np.ndarray:
        """Aggregate the columns of ``rows`` (one row per update, float64) into one row."""


def sorted_median(values: np.ndarray) -> np.ndarray:
    """Median of each column of column-sorted ``values`` (as ``np.median``, which is slower)."""
    n = values.shape[0]
    if n % 2:
        return values[n // 2]
    return (values[n // 2 - 1] + values[n // 2]) / 2


class Median(CoordinateWise):
    """Coordinate-wise median (Yin et al., 2018); the mean of the two middle values for even n.

    Args:
        f: Byzantine updates tolerated; needs ``n >= 2f + 1``.
        statistics: name substrings of float statistics (see :mod:`p2pfl_aggregators.base`).
        min_updates: raise the minimum number of updates (never below ``2f + 1``).
    """

    name = "median"

    def __init__(self, f: int = 1, *, statistics: Sequence[str] | None = None, min_updates: int | None = None) -> None:
        self.f = tolerance_f(f)
        super().__init__(statistics=statistics, min_updates=min_updates)

    @property
    def required_updates(self) -> int:
        return 2 * self.f + 1

    def coordinate(self, rows: np.ndarray, weights: Sequence[float]) -> np.ndarray:
        return sorted_median(np.sort(rows, axis=0))


class WeightedMedian(Median):
    """Sample-weighted coordinate-wise median.

    Per coordinate, sort the values; with cumulative weights ``C_k`` and total ``W``, the
    result is the mean of the first value with ``2 C_k >= W`` and the first with
    ``2 C_k > W`` (equal weights give exactly :class:`Median`). Weights are ``num_samples``,
    which a Byzantine node can inflate: prefer ``median`` when sample counts are not trusted.
    """

    name = "weighted-median"
    sample_weighted = True

    def coordinate(self, rows: np.ndarray, weights: Sequence[float]) -> np.ndarray:
        w = np.asarray(weights, dtype=np.int64)  # sample counts: exact integer comparisons
        order = np.argsort(rows, axis=0, kind="stable")
        values = np.take_along_axis(rows, order, axis=0)
        cumulative = np.cumsum(w[order], axis=0)
        total = int(w.sum())
        lo = np.argmax(2 * cumulative >= total, axis=0)[None]
        hi = np.argmax(2 * cumulative > total, axis=0)[None]
        return ((np.take_along_axis(values, lo, axis=0) + np.take_along_axis(values, hi, axis=0)) / 2)[0]


class TrimmedMean(CoordinateWise):
    """Coordinate-wise trimmed mean (Yin et al., 2018).

    Per coordinate, drop the ``k = floor(beta * n)`` largest and ``k`` smallest values and
    average the remaining ``n - 2k``.

    Args:
        beta: fraction trimmed from each side, ``0 <= beta < 0.5``; needs enough updates
            that ``k >= 1`` (e.g. 5 for the default 0.2).
    """

    name = "trimmed-mean"

    def __init__(
        self, beta: float = 0.2, *, statistics: Sequence[str] | None = None, min_updates: int | None = None
    ) -> None:
        self.beta = check_float("beta", beta, 0.0, 0.5, high_open=True)
        super().__init__(statistics=statistics, min_updates=min_updates)

    def trimmed(self, n: int) -> int:
        """Values dropped from each side for ``n`` updates (the epsilon absorbs 0.1 * 10 = 0.999...)."""
        return math.floor(self.beta * n + 1e-9)

    @property
    def required_updates(self) -> int:
        if self.beta == 0:
            return 1
        n = 1
        while self.trimmed(n) < 1:  # the first n at which anything is trimmed at all
            n += 1
        return n

    def coordinate(self, rows: np.ndarray, weights: Sequence[float]) -> np.ndarray:
        n = rows.shape[0]
        k = self.trimmed(n)
        kept = np.sort(rows, axis=0)[k : n - k]
        return np.add.reduce(kept, axis=0) / (n - 2 * k)


# --------------------------------------------------------------------------- distance-based


def flat_rows(updates: Sequence[Update], names: Sequence[str]) -> np.ndarray:
    """The learned tensors of each update concatenated into one float64 row: ``(n, D)``."""
    sizes = [updates[0].parameters[n].size for n in names]
    out = np.empty((len(updates), sum(sizes)), dtype=np.float64)
    for row, update in zip(out, updates):
        offset = 0
        for name, size in zip(names, sizes):
            row[offset : offset + size] = update.parameters[name].reshape(-1)
            offset += size
    return out


def unflatten(vector: np.ndarray, like: Parameters, names: Sequence[str]) -> Parameters:
    """Split a flat float64 vector back into the tensors ``names`` of ``like`` (their dtypes)."""
    out, offset = {}, 0
    for name in names:
        size = like[name].size
        out[name] = ops.cast_like(vector[offset : offset + size], like[name])
        offset += size
    return out


def krum_scores(d2: np.ndarray, candidates: Sequence[int], f: int) -> np.ndarray:
    """Krum score of each candidate: the sum of its ``m - f - 2`` smallest squared distances
    to the other candidates (``m`` candidates; at least 1 neighbour, at most ``m - 1``)."""
    m = len(candidates)
    k = min(max(m - f - 2, 1), m - 1)
    sub = d2[np.ix_(candidates, candidates)]
    scores = np.empty(m)
    for i in range(m):
        neighbours = np.sort(np.delete(sub[i], i))
        scores[i] = neighbours[:k].sum()
    return scores


class Krum(RobustAggregator):
    """Krum (Blanchard et al., 2017): the update closest to its ``n - f - 2`` nearest neighbours.

    ``score(i) = sum of ||x_i - x_j||^2 over the n - f - 2 updates j != i closest to x_i``;
    the update with the lowest score is returned as is (ties: the first in canonical order).

    Args:
        f: Byzantine updates tolerated; needs ``n >= 2f + 3``.
    """

    name = "krum"

    def __init__(self, f: int = 1, *, statistics: Sequence[str] | None = None, min_updates: int | None = None) -> None:
        self.f = tolerance_f(f)
        super().__init__(statistics=statistics, min_updates=min_updates)

    @property
    def required_updates(self) -> int:
        return 2 * self.f + 3

    def select(self, updates: Sequence[Update], names: Sequence[str]) -> list[int]:
        """Indices of the updates to average, in canonical order."""
        scores = krum_scores(ops.squared_distances(flat_rows(updates, names)), range(len(updates)), self.f)
        return [int(np.argsort(scores, kind="stable")[0])]

    def robust(
        self,
        updates: Sequence[Update],
        names: Sequence[str],
        weights: Sequence[float],
        global_parameters: Parameters | None,
    ) -> Parameters:
        chosen = [updates[i] for i in self.select(updates, names)]
        return {n: ops.weighted_mean([u.parameters[n] for u in chosen], [1.0] * len(chosen)) for n in names}


class MultiKrum(Krum):
    """Multi-Krum (Blanchard et al., 2017): the uniform mean of the ``m`` best-scored updates.

    Args:
        f: Byzantine updates tolerated; needs ``n >= 2f + 3``.
        m: updates averaged (default ``n - f``); needs ``n >= m``. ``m = 1`` is Krum.
    """

    name = "multi-krum"

    def __init__(
        self,
        f: int = 1,
        m: int | None = None,
        *,
        statistics: Sequence[str] | None = None,
        min_updates: int | None = None,
    ) -> None:
        self.m = None if m is None else check_int("m", m, 1)
        super().__init__(f, statistics=statistics, min_updates=min_updates)

    @property
    def required_updates(self) -> int:
        return max(2 * self.f + 3, self.m or 0)

    def select(self, updates: Sequence[Update], names: Sequence[str]) -> list[int]:
        m = self.m if self.m is not None else len(updates) - self.f
        scores = krum_scores(ops.squared_distances(flat_rows(updates, names)), range(len(updates)), self.f)
        return sorted(int(i) for i in np.argsort(scores, kind="stable")[:m])


class Bulyan(RobustAggregator):
    """Bulyan (El Mhamdi et al., 2018) over Krum.

    1. Select ``theta = n - 2f`` updates by applying Krum repeatedly to the remaining ones
       (scores over ``max(r - f - 2, 1)`` neighbours when ``r`` remain).
    2. Per coordinate, average the ``beta = theta - 2f`` selected values closest to their
       median (ties: the smaller value).

    Args:
        f: Byzantine updates tolerated; needs ``n >= 4f + 3``.
    """

    name = "bulyan"

    def __init__(self, f: int = 1, *, statistics: Sequence[str] | None = None, min_updates: int | None = None) -> None:
        self.f = tolerance_f(f)
        super().__init__(statistics=statistics, min_updates=min_updates)

    @property
    def required_updates(self) -> int:
        return 4 * self.f + 3

    def select(self, updates: Sequence[Update], names: Sequence[str]) -> list[int]:
        d2 = ops.squared_distances(flat_rows(updates, names))
        remaining = list(range(len(updates)))
        selected = []
        for _ in range(len(updates) - 2 * self.f):
            scores = krum_scores(d2, remaining, self.f)
            selected.append(remaining.pop(int(np.argsort(scores, kind="stable")[0])))
        return sorted(selected)

    def robust(
        self,
        updates: Sequence[Update],
        names: Sequence[str],
        weights: Sequence[float],
        global_parameters: Parameters | None,
    ) -> Parameters:
        chosen = [updates[i] for i in self.select(updates, names)]
        beta = len(chosen) - 2 * self.f

        def closest_to_median(rows: np.ndarray) -> np.ndarray:
            values = np.sort(rows, axis=0)
            distance = np.abs(values - sorted_median(values))
            closest = np.argsort(distance, axis=0, kind="stable")[:beta]
            return np.add.reduce(np.take_along_axis(values, closest, axis=0), axis=0) / beta

        out = {}
        for name in names:
            arrays = [u.parameters[name] for u in chosen]
            out[name] = ops.cast_like(ops.columnwise(arrays, closest_to_median), arrays[0])
        return out


class GeometricMedian(RobustAggregator):
    """Geometric median by the smoothed Weiszfeld algorithm (RFA, Pillutla et al., 2022).

    Minimizes ``g(v) = sum_i a_i ||v - x_i||`` with ``a_i`` uniform (or ``num_samples``
    when ``weighted``): start from the weighted mean, then repeat
    ``b_i = a_i / max(eps, ||v - x_i||)``, ``v = sum_i b_i x_i / sum_i b_i`` until
    ``|g_prev - g| <= tol * g`` or ``max_iter`` iterations.

    Args:
        f: Byzantine updates tolerated (breakdown point 1/2); needs ``n >= 2f + 1``.
        eps: smoothing ``nu`` of RFA (avoids dividing by a zero distance).
        max_iter: Weiszfeld iterations at most.
        tol: relative decrease of the objective at which to stop.
        weighted: weigh by ``num_samples`` as in the RFA paper; off by default because a
            Byzantine node can claim any sample count.
    """

    name = "geometric-median"

    def __init__(
        self,
        f: int = 1,
        eps: float = 1e-6,
        max_iter: int = 100,
        tol: float = 1e-6,
        weighted: bool = False,
        *,
        statistics: Sequence[str] | None = None,
        min_updates: int | None = None,
    ) -> None:
        self.f = tolerance_f(f)
        self.eps = check_float("eps", eps, 0.0, low_open=True)
        self.max_iter = check_int("max_iter", max_iter, 1)
        self.tol = check_float("tol", tol, 0.0)
        if not isinstance(weighted, bool):
            raise ValueError(f"weighted must be true or false, got {weighted!r}")
        self.sample_weighted = weighted
        #: Weiszfeld iterations of the last call (diagnostics).
        self.last_iterations = 0
        super().__init__(statistics=statistics, min_updates=min_updates)

    @property
    def required_updates(self) -> int:
        return 2 * self.f + 1

    def robust(
        self,
        updates: Sequence[Update],
        names: Sequence[str],
        weights: Sequence[float],
        global_parameters: Parameters | None,
    ) -> Parameters:
        rows = flat_rows(updates, names)
        alpha = np.asarray(weights, dtype=np.float64) / float(sum(weights))
        median = ops.weighted_sum64(list(rows), alpha.tolist())
        distance = np.sqrt(ops.squared_norms_to(rows, median))
        objective = float(alpha @ distance)
        self.last_iterations = 0
        for _ in range(self.max_iter):
            self.last_iterations += 1
            beta = alpha / np.maximum(self.eps, distance)
            median = ops.weighted_sum64(list(rows), (beta / beta.sum()).tolist())
            distance = np.sqrt(ops.squared_norms_to(rows, median))
            previous, objective = objective, float(alpha @ distance)
            if abs(previous - objective) <= self.tol * objective:
                break
        return unflatten(median, updates[0].parameters, names)


class CenteredClipping(RobustAggregator):
    """Centered clipping (Karimireddy, He and Jaggi, 2021).

    Starting from ``v`` = the round's starting model (``global_parameters``; the
    coordinate-wise median of the updates when it is unknown), repeat ``iterations`` times:
    ``v = v + (1/n) sum_i (x_i - v) * min(1, tau / ||x_i - v||)``. Clipping around the
    round's starting model bounds each node's model change to norm ``tau``.

    Args:
        tau: clipping radius (in the parameters' norm).
        iterations: clipping iterations ``l`` (the paper finds 1 enough in practice).
    """

    name = "centered-clipping"

    def __init__(
        self,
        tau: float = 10.0,
        iterations: int = 1,
        *,
        statistics: Sequence[str] | None = None,
        min_updates: int | None = None,
    ) -> None:
        self.tau = check_float("tau", tau, 0.0, low_open=True)
        self.iterations = check_int("iterations", iterations, 1)
        super().__init__(statistics=statistics, min_updates=min_updates)

    def robust(
        self,
        updates: Sequence[Update],
        names: Sequence[str],
        weights: Sequence[float],
        global_parameters: Parameters | None,
    ) -> Parameters:
        rows = flat_rows(updates, names)
        if global_parameters is None:
            center = np.median(rows, axis=0)
        else:
            check_same_parameters(updates[0].parameters, global_parameters, "global_parameters")
            center = flat_rows([Update(global_parameters, 0, frozenset(), 0)], names)[0]
        n = len(updates)
        for _ in range(self.iterations):
            distance = np.sqrt(ops.squared_norms_to(rows, center))
            with np.errstate(divide="ignore"):
                scale = np.minimum(1.0, self.tau / distance)  # distance 0: tau/0 = inf -> 1
            coefficients = scale / n
            center = center * (1.0 - coefficients.sum()) + ops.weighted_sum64(list(rows), coefficients.tolist())
        return unflatten(center, updates[0].parameters, names)
