"""``norm-clipped-mean``: the sample-weighted mean of updates whose norms were clipped.

Each update is measured by its *change*: its float tensors minus the model the round started
from. A change longer than the threshold is scaled down to it before averaging, which
bounds how far one node (faulty, malicious, or with unusual data) can pull the model, while
ordinary updates pass unchanged. With the default threshold, the median change norm of the
round, at most half of the updates are shortened and no node's pull exceeds a typical one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from p2pfl.aggregation import AggregationError, Aggregator
from p2pfl.parameters import Parameters, Update, is_float


class NormClippedMean(Aggregator):
    """Sample-weighted mean of the updates, each change clipped to an L2 norm.

    Args:
        max_norm: the clipping threshold; ``None`` uses the median of the round's change norms.
        min_updates: the fewest updates a round needs.

    Integer tensors (e.g. batch-norm counters) are averaged, rounded to the nearest integer,
    without clipping. Without ``global_parameters`` (the round's starting model) the norms
    are those of the models themselves.
    """

    name = "norm-clipped-mean"
    supports_partial = False  # clipping depends on the whole round: partial aggregates do not merge

    def __init__(self, max_norm: float | None = None, min_updates: int = 1) -> None:
        if max_norm is not None and not (
            isinstance(max_norm, (int, float)) and math.isfinite(max_norm) and max_norm > 0
        ):
            raise ValueError(f"max_norm must be a positive number or None, got {max_norm!r}")
        if int(min_updates) < 1:
            raise ValueError(f"min_updates must be >= 1, got {min_updates!r}")
        self.max_norm = None if max_norm is None else float(max_norm)
        self._min_updates = int(min_updates)

    @property
    def min_updates(self) -> int:
        return self._min_updates

    def aggregate(self, updates: Sequence[Update], global_parameters: Parameters | None = None) -> Update:
        self.check_count(updates)
        total = sum(u.num_samples for u in updates)
        if total <= 0:
            raise AggregationError("the updates carry no training samples")
        first = updates[0].parameters
        others = [u.parameters for u in updates[1:]]
        if global_parameters is not None:
            others.append(global_parameters)
        for params in others:
            check_same_layout(first, params)
        floats = [n for n in first if is_float(first[n])]
        start = global_parameters if global_parameters is not None else {n: np.zeros_like(first[n]) for n in floats}
        base = {n: start[n].astype(np.float64) for n in floats}
        changes = [{n: u.parameters[n].astype(np.float64) - base[n] for n in floats} for u in updates]
        norms = [math.sqrt(sum(float(np.sum(c * c)) for c in change.values())) for change in changes]
        threshold = self.max_norm if self.max_norm is not None else float(np.median(norms))
        scales = [min(1.0, threshold / norm) if norm > 0 else 1.0 for norm in norms]
        weights = [u.num_samples / total for u in updates]
        result: Parameters = {}
        for name, value in first.items():
            acc = np.zeros(value.shape, np.float64)
            if name in base:
                acc += base[name]
                for change, scale, weight in zip(changes, scales, weights, strict=True):
                    acc += change[name] * (scale * weight)
            else:  # integer buffers: plain weighted mean, rounded to the nearest integer
                for update, weight in zip(updates, weights, strict=True):
                    acc += update.parameters[name].astype(np.float64) * weight
                acc = np.rint(acc)
            result[name] = np.asarray(acc).astype(value.dtype)  # 0-d results stay arrays
        return Update(
            parameters=result,
            num_samples=total,
            contributors=frozenset().union(*(u.contributors for u in updates)),
            round=max(u.round for u in updates),
        )


def check_same_layout(expected: Parameters, got: Parameters) -> None:
    """The same names, in order, with the same shapes and dtypes, or AggregationError."""
    if list(got) != list(expected):
        raise AggregationError("the updates do not carry the same tensor names")
    for name, value in got.items():
        if value.shape != expected[name].shape or value.dtype != expected[name].dtype:
            raise AggregationError(
                f"{name}: {value.dtype}{value.shape} != {expected[name].dtype}{expected[name].shape}"
            )
