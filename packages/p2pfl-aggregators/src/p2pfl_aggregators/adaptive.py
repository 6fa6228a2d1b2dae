"""Server momentum and adaptive server optimizers (Reddi et al., 2021, "Adaptive Federated
Optimization"; FedAvgM: Hsu et al., 2019).

Each round, with ``x`` the round's starting model (``global_parameters``) and the
sample-weighted mean of the updates, the pseudo-gradient is ``D = mean(updates) - x``;
the new model is ``x + eta * m / (sqrt(v) + tau)`` (FedAvgM: ``x + eta * m``). Statistics
(see :mod:`p2pfl_aggregators.base`) are never fed to the optimizer: they take the weighted
mean of the updates. No bias correction is applied, as in the paper (``m`` starts at 0 and
``v`` at ``tau**2``, the paper's ``v_{-1} >= tau**2``).

**Consistency across nodes.** The state (``m``, ``v``) is derived deterministically: every
node aggregating a round gets the same updates in the same order, so it takes the same
step from the same state. The state also *travels with the model*: the aggregated update
carries it in its extras (``"<name>.m"``, ``"<name>.v"``), and the aggregator's training
callback reloads it from the round's starting model (``FitContext.extras``) before local
training, so a node that did not aggregate the previous rounds (it was not in the train
set, or joined late) still aggregates from the same state as everybody else. State is kept
in float32 (float64 for float64 tensors), exactly as it travels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np

from p2pfl.aggregation import AggregationError
from p2pfl.learning.learner import FitContext, GradientCorrection, TrainingCallback
from p2pfl.parameters import Parameters, Update
from p2pfl_aggregators import ops
from p2pfl_aggregators.base import (
    PackageAggregator,
    check_float,
    check_same_parameters,
    combine,
    sample_weights,
    state_dtype,
)


class ServerOptimizer(PackageAggregator):
    """Base of the FedOpt family: pseudo-gradient, per-tensor state, state in extras."""

    supports_partial = False
    #: names of the state tensors kept per learned tensor
    moments: ClassVar[tuple[str, ...]] = ("m", "v")

    def __init__(self, eta: float, *, statistics: Sequence[str] | None = None, min_updates: int | None = None) -> None:
        self.eta = check_float("eta", eta, 0.0, low_open=True)
        super().__init__(statistics=statistics, min_updates=min_updates)
        self._state: dict[str, Parameters] = {k: {} for k in self.moments}
        self._callback = StateSync(self)

    # ---------------------------------------------------------------- aggregation

    def aggregate(self, updates: Sequence[Update], global_parameters: Parameters | None = None) -> Update:
        learned, stats = self.prepare(updates)
        if global_parameters is None:
            raise AggregationError(
                f"{self.name} needs global_parameters (the model the round started from) to compute "
                "the pseudo-gradient; got None"
            )
        check_same_parameters(updates[0].parameters, global_parameters, "global_parameters")
        weights = sample_weights(updates)
        params = {}
        new_state: dict[str, Parameters] = {k: dict(self._state[k]) for k in self.moments}
        for name in learned:
            like = global_parameters[name]
            x = like.astype(np.float64)
            delta = ops.weighted_mean64([u.parameters[name] for u in updates], weights) - x
            state, step = self.rule(delta, **{k: self.moment(k, name, like) for k in self.moments})
            for k, value in state.items():
                new_state[k][name] = value.astype(state_dtype(like))
            params[name] = ops.cast_like(x + step, like)
        params.update(self.average(updates, stats, weights))
        self._state = new_state  # only now: a failed aggregation leaves the state as it was
        return combine(updates, params, extras=self.state_extras())

    def rule(self, delta: np.ndarray, **state: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The optimizer's rule: new state (float64) and the step added to the model."""
        raise NotImplementedError

    def initial(self, moment: str, like: np.ndarray) -> np.ndarray:
        """Initial value of a moment: ``m = 0``, ``v = tau**2``."""
        return np.zeros(like.shape, dtype=np.float64)

    def moment(self, moment: str, name: str, like: np.ndarray) -> np.ndarray:
        stored = self._state[moment].get(name)
        if stored is None:
            return self.initial(moment, like)
        if stored.shape != like.shape:
            raise AggregationError(f"{self.name}: state {moment}[{name}] has shape {stored.shape}, model {like.shape}")
        return stored.astype(np.float64)

    # ---------------------------------------------------------------- state

    def state_key(self, moment: str) -> str:
        """Extras key under which ``moment`` travels with the aggregated model."""
        return f"{self.name}.{moment}"

    def state_extras(self) -> dict[str, Parameters]:
        return {self.state_key(k): dict(self._state[k]) for k in self.moments}

    def get_state(self) -> dict[str, Parameters]:
        return {k: {n: v.copy() for n, v in self._state[k].items()} for k in self.moments}

    def set_state(self, state: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        """Load ``{"m": {...}, "v": {...}}``; a moment left out restarts from its initial value."""
        unknown = set(state) - set(self.moments)
        if unknown:
            raise ValueError(f"{self.name} state has unknown entries {sorted(unknown)}; expected {self.moments}")
        self._state = {k: {n: np.array(v, copy=True) for n, v in state.get(k, {}).items()} for k in self.moments}

    def training_callback(self) -> TrainingCallback:
        return self._callback


class StateSync(TrainingCallback):
    """Reloads the optimizer state carried by the round's starting model before training."""

    def __init__(self, aggregator: ServerOptimizer) -> None:
        self.aggregator = aggregator

    def on_fit_start(self, ctx: FitContext) -> GradientCorrection | None:
        agg = self.aggregator
        keys = {k: agg.state_key(k) for k in agg.moments}
        if any(key in ctx.extras for key in keys.values()):
            agg.set_state({k: ctx.extras[key] for k, key in keys.items() if key in ctx.extras})
        return None


class FedAvgM(ServerOptimizer):
    """FedAvg with server momentum (Hsu et al., 2019): ``m = momentum * m + D``, ``x += eta * m``.

    Args:
        eta: server learning rate (1 with ``momentum=0`` is FedAvg).
        momentum: server momentum ``beta``.
    """

    name = "fedavgm"
    moments = ("m",)

    def __init__(
        self,
        eta: float = 1.0,
        momentum: float = 0.9,
        *,
        statistics: Sequence[str] | None = None,
        min_updates: int | None = None,
    ) -> None:
        self.momentum = check_float("momentum", momentum, 0.0, 1.0, high_open=True)
        super().__init__(eta, statistics=statistics, min_updates=min_updates)

    def rule(self, delta: np.ndarray, **state: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        m = self.momentum * state["m"] + delta
        return {"m": m}, self.eta * m


class AdaptiveOptimizer(ServerOptimizer):
    """Shared parameters of FedAdagrad, FedAdam and FedYogi (Algorithm 2 of Reddi et al.)."""

    def __init__(
        self,
        eta: float = 0.01,
        beta1: float = 0.9,
        beta2: float = 0.99,
        tau: float = 1e-3,
        *,
        statistics: Sequence[str] | None = None,
        min_updates: int | None = None,
    ) -> None:
        self.beta1 = check_float("beta1", beta1, 0.0, 1.0, high_open=True)
        self.beta2 = check_float("beta2", beta2, 0.0, 1.0, high_open=True)
        self.tau = check_float("tau", tau, 0.0, low_open=True)
        super().__init__(eta, statistics=statistics, min_updates=min_updates)

    def initial(self, moment: str, like: np.ndarray) -> np.ndarray:
        fill = self.tau**2 if moment == "v" else 0.0
        return np.full(like.shape, fill, dtype=np.float64)

    def rule(self, delta: np.ndarray, **state: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        m = self.beta1 * state["m"] + (1.0 - self.beta1) * delta
        v = self.second_moment(state["v"], delta * delta)
        return {"m": m, "v": v}, self.eta * m / (np.sqrt(v) + self.tau)

    def second_moment(self, v: np.ndarray, d2: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class FedAdagrad(AdaptiveOptimizer):
    """FedAdagrad: ``v = v + D**2``.

    Args:
        eta: server learning rate; beta1: momentum of ``m``; beta2: unused by the rule
            (accepted for symmetry); tau: adaptivity (``v`` starts at ``tau**2``).
    """

    name = "fedadagrad"

    def __init__(
        self,
        eta: float = 0.1,
        beta1: float = 0.9,
        beta2: float = 0.99,
        tau: float = 1e-3,
        *,
        statistics: Sequence[str] | None = None,
        min_updates: int | None = None,
    ) -> None:
        super().__init__(eta, beta1, beta2, tau, statistics=statistics, min_updates=min_updates)

    def second_moment(self, v: np.ndarray, d2: np.ndarray) -> np.ndarray:
        return v + d2


class FedAdam(AdaptiveOptimizer):
    """FedAdam: ``v = beta2 * v + (1 - beta2) * D**2``."""

    name = "fedadam"

    def second_moment(self, v: np.ndarray, d2: np.ndarray) -> np.ndarray:
        return self.beta2 * v + (1.0 - self.beta2) * d2


class FedYogi(AdaptiveOptimizer):
    """FedYogi: ``v = v - (1 - beta2) * D**2 * sign(v - D**2)``."""

    name = "fedyogi"

    def second_moment(self, v: np.ndarray, d2: np.ndarray) -> np.ndarray:
        return v - (1.0 - self.beta2) * d2 * np.sign(v - d2)
