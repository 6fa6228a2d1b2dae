"""Client-drift correction: FedProx (Li et al., 2020) and SCAFFOLD (Karimireddy et al., 2020).

Both add a term to local training through core's training-callback mechanism: the
callback returns a :class:`~p2pfl.learning.GradientCorrection` (``g += scale * w + offset``,
trainable parameters only, every step), which each framework's learner applies, so the same
code serves torch, tensorflow and flax.

The tensors corrected are ``FitContext.trainable`` (what the learner reports as trainable);
when a learner reports none, the learned tensors of the statistics rule of
:mod:`p2pfl_aggregators.base` are used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from p2pfl.aggregation import AggregationError, FedAvg
from p2pfl.learning.learner import FitContext, FitResult, GradientCorrection, TrainingCallback
from p2pfl.parameters import Parameters, Update
from p2pfl_aggregators import ops
from p2pfl_aggregators.base import (
    PackageAggregator,
    check_float,
    check_int,
    check_same_parameters,
    check_statistics,
    combine,
    sample_weights,
    split_names,
    state_dtype,
)

log = logging.getLogger(__name__)


def trainable_names(ctx: FitContext, statistics: Sequence[str]) -> list[str]:
    """The learner's trainable tensors, or the learned ones by the statistics rule."""
    if ctx.trainable:
        return [n for n in ctx.trainable if n in ctx.global_parameters]
    return split_names(ctx.global_parameters, statistics)[0]


# --------------------------------------------------------------------------- FedProx


class FedProx(FedAvg):
    """FedProx: FedAvg aggregation plus the proximal term ``(mu / 2) ||w - w_global||^2`` in
    local training, i.e. the gradient correction ``mu * w - mu * w_global``.

    Aggregation is exactly core's FedAvg, so partial aggregates merge (``supports_partial``).

    Args:
        mu: proximal coefficient (``0`` is FedAvg).
        statistics: name substrings of float statistics, used only when the learner does
            not report its trainable tensors.
    """

    name = "fedprox"
    supports_partial = True

    def __init__(self, mu: float = 0.01, *, statistics: Sequence[str] | None = None) -> None:
        self.mu = check_float("mu", mu, 0.0)
        self.statistics = check_statistics(statistics)
        self._callback = ProximalTerm(self.mu, self.statistics)

    def aggregate(self, updates: Sequence[Update], global_parameters: Parameters | None = None) -> Update:
        result = super().aggregate(updates, global_parameters)
        # core's weighted_mean returns a numpy scalar for 0-d integer tensors; keep arrays
        return replace(result, parameters={n: np.asarray(v) for n, v in result.parameters.items()})

    def training_callback(self) -> TrainingCallback:
        return self._callback


class ProximalTerm(TrainingCallback):
    """FedProx's local term: ``GradientCorrection(scale=mu, offset=-mu * w_global)``."""

    def __init__(self, mu: float, statistics: Sequence[str]) -> None:
        self.mu = mu
        self.statistics = tuple(statistics)

    def on_fit_start(self, ctx: FitContext) -> GradientCorrection | None:
        if self.mu == 0:
            return None
        offset = {}
        for name in trainable_names(ctx, self.statistics):
            w = ctx.global_parameters[name]
            offset[name] = (-self.mu * w.astype(np.float64)).astype(state_dtype(w))
        return GradientCorrection(scale=self.mu, offset=offset)


# --------------------------------------------------------------------------- SCAFFOLD

#: extras key of the global control variate ``c`` (travels with the aggregated model)
CONTROL_KEY = "scaffold.c"
#: extras key of a node's control-variate change ``c_i+ - c_i`` (travels with its update)
DELTA_KEY = "scaffold.delta_c"


class Scaffold(PackageAggregator):
    """SCAFFOLD with option II control variates (Karimireddy et al., 2020).

    Local training (callback, node ``i``, ``K`` steps of learning rate ``lr`` from ``x``):
    gradients are corrected by ``c - c_i``; afterwards
    ``c_i+ = c_i - c + (x - y_i) / (K * lr)`` and ``delta_c_i = c_i+ - c_i`` travels in the
    update's extras (``"scaffold.delta_c"``). ``c_i`` stays in the node's callback.

    Aggregation over the ``|S|`` updates (uniform means, as in the paper):
    ``x = x + eta_g * mean(y_i - x)``, ``c = c + (|S| / N) * mean(delta_c_i)``; the new ``c``
    travels in the aggregated update's extras (``"scaffold.c"``) and reaches the next round's
    callbacks through ``FitContext.extras`` (zeros before the first aggregation).

    Args:
        eta_g: global step size (1 averages the models).
        num_nodes: ``N``, the number of nodes holding a control variate; when ``None``,
            ``N = |S|`` (every node trains every round). Set it when train sets are
            smaller than the network.
        statistics: name substrings of float statistics (averaged, sample-weighted).
    """

    name = "scaffold"
    supports_partial = False

    def __init__(
        self,
        eta_g: float = 1.0,
        num_nodes: int | None = None,
        *,
        statistics: Sequence[str] | None = None,
        min_updates: int | None = None,
    ) -> None:
        self.eta_g = check_float("eta_g", eta_g, 0.0, low_open=True)
        self.num_nodes = None if num_nodes is None else check_int("num_nodes", num_nodes, 1)
        super().__init__(statistics=statistics, min_updates=min_updates)
        #: the global control variate of the current round (set by the callback or aggregation)
        self.control: Parameters = {}
        self._callback = ScaffoldCallback(self)

    def training_callback(self) -> TrainingCallback:
        return self._callback

    def aggregate(self, updates: Sequence[Update], global_parameters: Parameters | None = None) -> Update:
        learned, stats = self.prepare(updates)
        if global_parameters is None:
            raise AggregationError("scaffold needs global_parameters (the model the round started from); got None")
        check_same_parameters(updates[0].parameters, global_parameters, "global_parameters")
        n = len(updates)
        total = self.num_nodes if self.num_nodes is not None else n
        if n > total:
            raise AggregationError(f"scaffold: {n} updates but num_nodes={total}")
        uniform = [1.0] * n
        params = {}
        for name in learned:
            like = global_parameters[name]
            x = like.astype(np.float64)
            mean_y = ops.weighted_mean64([u.parameters[name] for u in updates], uniform)
            params[name] = ops.cast_like(x + self.eta_g * (mean_y - x), like)
        params.update(self.average(updates, stats, sample_weights(updates)))
        self.control = self.new_control(updates, global_parameters, n / total)
        return combine(updates, params, extras={CONTROL_KEY: dict(self.control)} if self.control else {})

    def new_control(self, updates: Sequence[Update], global_parameters: Parameters, fraction: float) -> Parameters:
        """``c + fraction * mean(delta_c_i)`` over the tensors the callbacks corrected.

        An update without ``"scaffold.delta_c"`` counts as an unchanged ``c_i`` (zero delta),
        with a warning: its node did not run the SCAFFOLD callback.
        """
        missing = sorted(c for u in updates if DELTA_KEY not in u.extras for c in u.contributors)
        if missing:
            log.warning(
                "scaffold: updates of %s carry no %r; is the SCAFFOLD training callback installed on "
                "every node? Counting their control-variate change as zero",
                missing,
                DELTA_KEY,
            )
        carrying = [u for u in updates if DELTA_KEY in u.extras]
        names = list(dict.fromkeys([*self.control, *(n for u in carrying for n in u.extras[DELTA_KEY])]))
        control = {}
        for name in names:
            like = global_parameters.get(name)
            if like is None:
                raise AggregationError(f"scaffold: control variate names unknown tensor {name!r}")
            total = np.zeros(like.shape)
            for u in carrying:
                delta = u.extras[DELTA_KEY].get(name)
                if delta is None:
                    continue
                if delta.shape != like.shape:
                    raise AggregationError(
                        f"scaffold: {DELTA_KEY}[{name}] of {sorted(u.contributors)} has shape {delta.shape}, "
                        f"model {like.shape}"
                    )
                total += delta.astype(np.float64)
            c = self.control.get(name)
            c64 = np.zeros(like.shape) if c is None else c.astype(np.float64)
            control[name] = (c64 + fraction * (total / len(updates))).astype(state_dtype(like))
        return control

    def get_state(self) -> dict[str, Parameters]:
        return {"c": {n: v.copy() for n, v in self.control.items()}}

    def set_state(self, state: dict[str, Parameters]) -> None:
        self.control = {n: np.array(v, copy=True) for n, v in state.get("c", {}).items()}


class ScaffoldCallback(TrainingCallback):
    """One node's side of SCAFFOLD: holds ``c_i`` across rounds, corrects by ``c - c_i``."""

    def __init__(self, aggregator: Scaffold) -> None:
        self.aggregator = aggregator
        #: this node's control variate ``c_i`` (zeros until its first fit)
        self.local: Parameters = {}

    @staticmethod
    def zeros(like: np.ndarray) -> np.ndarray:
        return np.zeros(like.shape, dtype=state_dtype(like))

    def on_fit_start(self, ctx: FitContext) -> GradientCorrection | None:
        names = trainable_names(ctx, self.aggregator.statistics)
        received = ctx.extras.get(CONTROL_KEY, {})
        control = {}
        for name in names:
            like = ctx.global_parameters[name]
            c = received.get(name)
            if c is not None and c.shape != like.shape:
                raise ValueError(f"scaffold: global control variate {name} has shape {c.shape}, model {like.shape}")
            control[name] = self.zeros(like) if c is None else np.asarray(c, dtype=state_dtype(like))
        self.aggregator.control = control  # the aggregation of this round starts from this c
        offset = {}
        for name in names:
            local = self.local.get(name, self.zeros(ctx.global_parameters[name]))
            offset[name] = (control[name].astype(np.float64) - local).astype(control[name].dtype)
        return GradientCorrection(scale=0.0, offset=offset)

    def on_fit_end(self, ctx: FitContext, parameters: Parameters, result: FitResult) -> dict[str, Parameters]:
        names = trainable_names(ctx, self.aggregator.statistics)
        steps, lr = result.num_steps, result.learning_rate or 0.0
        if steps > 0 and not lr:
            raise ValueError(
                "scaffold needs the learner to report its learning rate (FitResult.learning_rate) "
                "to compute the option II control variate"
            )
        delta = {}
        for name in names:
            like = ctx.global_parameters[name]
            c = self.aggregator.control.get(name)
            c64 = np.zeros(like.shape) if c is None else c.astype(np.float64)
            local64 = self.local[name].astype(np.float64) if name in self.local else np.zeros(like.shape)
            if steps > 0:
                drift = (like.astype(np.float64) - parameters[name].astype(np.float64)) / (steps * lr)
                new_local = local64 - c64 + drift
            else:  # no step taken: c_i unchanged
                new_local = local64
            stored = new_local.astype(state_dtype(like))
            self.local[name] = stored
            # from the stored values, so that c stays the mean of the c_i as they are kept
            delta[name] = (stored.astype(np.float64) - local64).astype(stored.dtype)
        return {DELTA_KEY: delta}
