"""FedAvg: the sample-weighted mean of the updates (McMahan et al., 2017)."""

from __future__ import annotations

from collections.abc import Sequence

from p2pfl.aggregation.aggregator import AggregationError, Aggregator
from p2pfl.aggregation.kernels import weighted_mean
from p2pfl.parameters import Parameters, Update, check_compatible, is_float


def check_same_tensors(updates: Sequence[Update]) -> None:
    """Every update must carry the same names, shapes and dtypes as the first."""
    first = updates[0].parameters
    for update in updates[1:]:
        try:
            check_compatible(first, update.parameters)
        except ValueError as exc:
            raise AggregationError(str(exc)) from None
        for name, value in update.parameters.items():
            if value.dtype != first[name].dtype:
                raise AggregationError(f"{name}: dtype {value.dtype} != {first[name].dtype}")


def merge_extras(updates: Sequence[Update], weights: Sequence[float]) -> dict[str, Parameters]:
    """Weighted mean of each extra present in every update (e.g. control-variate deltas)."""
    names = set.intersection(*(set(u.extras) for u in updates)) if updates else set()
    return {
        key: {n: weighted_mean([u.extras[key][n] for u in updates], weights) for n in updates[0].extras[key]}
        for key in sorted(names)
    }


class FedAvg(Aggregator):
    """Sample-weighted mean. Partial aggregates of disjoint contributor sets can be merged."""

    name = "fedavg"
    supports_partial = True

    def aggregate(self, updates: Sequence[Update], global_parameters: Parameters | None = None) -> Update:
        self.check_count(updates)
        seen: set[str] = set()
        for update in updates:
            if seen & update.contributors:
                raise AggregationError(f"contributors aggregated twice: {sorted(seen & update.contributors)}")
            seen |= update.contributors
        total = sum(u.num_samples for u in updates)
        if total <= 0:
            raise AggregationError("cannot aggregate: the updates carry zero samples in total")
        check_same_tensors(updates)
        weights = [float(u.num_samples) for u in updates]
        params = {name: weighted_mean([u.parameters[name] for u in updates], weights) for name in updates[0].parameters}
        return Update(
            parameters=params,
            num_samples=total,
            contributors=frozenset(seen),
            round=max(u.round for u in updates),
            extras=merge_extras(updates, weights),
        )


__all__ = ["FedAvg", "check_same_tensors", "is_float", "merge_extras", "weighted_mean"]
