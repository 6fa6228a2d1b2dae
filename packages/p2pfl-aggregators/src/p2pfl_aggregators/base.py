"""What every aggregator of this package shares: validation, the statistics rule, results.

**Statistics rule.** An aggregator only sees :class:`~p2pfl.parameters.Parameters`, not
which tensors the learner's optimizer updates, so a tensor is a *statistic* (a buffer) when

* its dtype is not floating (integer counters such as ``num_batches_tracked``, booleans,
  complex tensors), or
* its name contains one of the ``statistics`` substrings, by default
  :data:`DEFAULT_STATISTICS` (PyTorch ``running_mean``/``running_var``/
  ``num_batches_tracked``, Keras ``moving_mean``/``moving_variance``, Flax ``batch_stats``).

Statistics are never fed to robust selection nor to server optimizers: they are averaged
(weighted as the aggregator weighs updates), and integer tensors stay integer (rounded
mean). Every other tensor is *learned*. Pass ``statistics=[]`` to treat float buffers as
learned tensors, or your own list of substrings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from p2pfl.aggregation import AggregationError, Aggregator
from p2pfl.parameters import ParameterMismatchError, Parameters, Update, check_compatible, is_float
from p2pfl_aggregators import ops

#: name substrings of float tensors that are statistics, not learned weights.
DEFAULT_STATISTICS: tuple[str, ...] = ("running_", "num_batches_tracked", "moving_", "batch_stats")


def is_statistic(name: str, array: np.ndarray, statistics: Iterable[str]) -> bool:
    """True if ``name`` is a buffer/statistic under the rule of this module."""
    return not is_float(array) or any(s in name for s in statistics)


def split_names(params: Parameters, statistics: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(learned, statistics)`` names of ``params``, each in the model's order."""
    statistics = tuple(statistics)
    learned: list[str] = []
    stats: list[str] = []
    for name, value in params.items():
        (stats if is_statistic(name, value, statistics) else learned).append(name)
    return learned, stats


# --------------------------------------------------------------------------- validation


def check_int(what: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum``; a clear ``ValueError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_float(
    what: str, value: Any, low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False
) -> float:
    """``value`` as a finite float within the given bounds; a clear ``ValueError`` otherwise."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = math.isfinite(v) or (high == math.inf and v == math.inf)
        ok = ok and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        bounds = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{what} must be a number in {bounds}, got {value!r}")
    return float(value)


def check_statistics(value: Any) -> tuple[str, ...]:
    """The ``statistics`` parameter: ``None`` (defaults) or a list of name substrings."""
    if value is None:
        return DEFAULT_STATISTICS
    if isinstance(value, str) or not all(isinstance(s, str) and s for s in value):
        raise ValueError(f"statistics must be a list of non-empty name substrings, got {value!r}")
    return tuple(value)


def check_updates(updates: Sequence[Update]) -> None:
    """Same tensors (names, shapes, dtypes) everywhere and no contributor counted twice."""
    seen: set[str] = set()
    for update in updates:
        twice = seen & update.contributors
        if twice:
            raise AggregationError(f"contributors aggregated twice: {sorted(twice)}")
        seen |= update.contributors
    first = updates[0].parameters
    for update in updates[1:]:
        check_same_parameters(first, update.parameters, f"update of {sorted(update.contributors)}")


def check_same_parameters(expected: Parameters, got: Parameters, what: str) -> None:
    """Names, shapes and dtypes of ``got`` equal ``expected``'s, as an :class:`AggregationError`."""
    try:
        check_compatible(expected, got)
    except ParameterMismatchError as exc:
        raise AggregationError(f"{what}: {exc}") from None
    for name, value in got.items():
        if value.dtype != expected[name].dtype:
            raise AggregationError(f"{what}: {name} has dtype {value.dtype}, expected {expected[name].dtype}")


def combine(updates: Sequence[Update], parameters: Parameters, extras: dict[str, Parameters] | None = None) -> Update:
    """The aggregate of ``updates``: union of contributors, sum of samples, latest round.

    ``parameters`` is reordered to the model's order.
    """
    order = updates[0].parameters
    return Update(
        parameters={name: parameters[name] for name in order},
        num_samples=sum(u.num_samples for u in updates),
        contributors=frozenset().union(*(u.contributors for u in updates)),
        round=max(u.round for u in updates),
        extras=extras or {},
    )


def sample_weights(updates: Sequence[Update]) -> list[float]:
    """``num_samples`` of each update; an :class:`AggregationError` if they sum to zero."""
    weights = [float(u.num_samples) for u in updates]
    if sum(weights) <= 0:
        raise AggregationError("cannot aggregate: the updates carry zero samples in total")
    return weights


def state_dtype(like: np.ndarray) -> np.dtype:
    """dtype of optimizer state kept for a tensor: float64 for float64 tensors, else float32."""
    return np.dtype(np.float64) if like.dtype == np.float64 else np.dtype(np.float32)


# --------------------------------------------------------------------------- base class


class PackageAggregator(Aggregator):
    """Base of this package's aggregators: ``statistics`` and ``min_updates`` parameters.

    Subclasses set :attr:`required_updates` (the fewest updates their algorithm is defined
    for, given their parameters); ``min_updates`` may raise that floor, never lower it.
    """

    def __init__(self, *, statistics: Sequence[str] | None = None, min_updates: int | None = None) -> None:
        self.statistics = check_statistics(statistics)
        required = self.required_updates
        if min_updates is None:
            self._min_updates = required
        else:
            self._min_updates = check_int("min_updates", min_updates, 1)
            if self._min_updates < required:
                raise ValueError(
                    f"{self.name} with these parameters needs at least {required} updates; "
                    f"min_updates={min_updates} is too low"
                )

    @property
    def required_updates(self) -> int:
        """The fewest updates the algorithm is defined for with the current parameters."""
        return 1

    @property
    def min_updates(self) -> int:
        return self._min_updates

    def check_count(self, updates: Sequence[Update]) -> None:
        if len(updates) < self.min_updates:
            raise AggregationError(f"{self.name} needs at least {self.min_updates} updates, got {len(updates)}")

    def prepare(self, updates: Sequence[Update]) -> tuple[list[str], list[str]]:
        """Validate ``updates``; return their ``(learned, statistics)`` tensor names."""
        self.check_count(updates)  # min_updates >= 1, so this also rejects an empty list
        check_updates(updates)
        return split_names(updates[0].parameters, self.statistics)

    def average(self, updates: Sequence[Update], names: Sequence[str], weights: Sequence[float]) -> Parameters:
        """Weighted mean of the tensors ``names`` (statistics), each in its own dtype."""
        return {n: ops.weighted_mean([u.parameters[n] for u in updates], weights) for n in names}
