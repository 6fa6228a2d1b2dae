"""The default learning workflow (DESIGN §5): synchronous rounds over gossip.

Round ``r`` on every node:

1. :class:`SelectTrainSet` — the train set is a seeded draw over the plan's members, so
   every node computes the same one without a vote.
2. :class:`LocalTraining` — trainers fit locally (in the worker pool), encode their update
   with the node's codec pipeline (deltas against the round's base) and gossip it.
3. :class:`ExchangeUpdates` — every node waits, on events, until it holds the update of
   every live trainer. A trainer known to have failed is dropped from what is awaited at
   once; the aggregation deadline is the last resort.
4. :class:`Aggregate` — every node aggregates the same updates in the same canonical order,
   so all nodes end the round with bit-identical models (non-trainers included: this is how
   the model diffuses to them).
5. :class:`Evaluate` — the node evaluates the new model and reports the round's metrics.

Aggregating *individual* updates everywhere (rather than merging partial aggregates on the
way) is what makes the result exact and independent of arrival order; gossip's covered-set
relaying keeps each update to about one transmission per edge.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from p2pfl.aggregation.aggregator import AggregationError
from p2pfl.compression.codec import CodecError
from p2pfl.learning.learner import FitContext, GradientCorrection
from p2pfl.parameters import Update, freeze
from p2pfl.wire.message import Message, ModelPayload
from p2pfl.workflow.base import RoundContext, Stage, Workflow
from p2pfl.workflow.plan import LearningPlan

if TYPE_CHECKING:
    from p2pfl.node.node import Node

log = logging.getLogger(__name__)

UPDATE = "update"
INITIAL_MODEL = "model_init"


class SelectTrainSet(Stage):
    name = "select-trainset"

    async def run(self, ctx: RoundContext) -> None:
        ctx.trainset = ctx.plan.trainset(ctx.round)
        ctx.node.notify("p2pfl_round_started", round=ctx.round, trainset=list(ctx.trainset))


class LocalTraining(Stage):
    name = "local-training"

    async def run(self, ctx: RoundContext) -> None:
        if not ctx.is_trainer:
            return
        node = ctx.node
        fit_ctx = FitContext(
            node_id=node.id,
            round=ctx.round,
            global_parameters=ctx.base,
            extras=dict(node.round_extras),
            trainable=node.learner.trainable_names(),
        )
        correction = sum_corrections(cb.on_fit_start(fit_ctx) for cb in node.training_callbacks)
        result = await node.train(ctx.plan.epochs, correction)
        if result.interrupted:
            raise asyncio.CancelledError("local training interrupted")
        params = await node.runtime.in_worker(node.learner.get_parameters)
        extras = {}
        for cb in node.training_callbacks:
            extras.update(cb.on_fit_end(fit_ctx, params, result))
        ctx.metrics.update({k if k.startswith("train_") else f"train_{k}": v for k, v in result.metrics.items()})
        node.notify("p2pfl_local_training_done", round=ctx.round, metrics=dict(result.metrics))
        encoded = await node.runtime.in_worker(node.pipeline.encode, params, ctx.base)
        payload = ModelPayload(encoded, result.num_samples, (node.id,), {k: freeze(v) for k, v in extras.items()})
        node.broadcast_round_message(UPDATE, ctx.plan, ctx.round, payload)


class ExchangeUpdates(Stage):
    name = "exchange-updates"

    async def run(self, ctx: RoundContext) -> None:
        node = ctx.node
        received = node.inbox(ctx.plan.id, ctx.round)
        deadline = asyncio.get_running_loop().time() + node.settings.aggregation_timeout
        dropped: set[str] = set()
        while True:
            for t in ctx.trainset:
                why = node.unavailable(t)
                if t not in received and why and t not in dropped:
                    dropped.add(t)
                    log.info("%s: round %d: not waiting for %s (%s)", node.id, ctx.round, t, why)
            missing = [t for t in ctx.trainset if t not in received and not node.unavailable(t)]
            if not missing:
                break
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                log.warning("%s: round %d: aggregation deadline passed without %s", node.id, ctx.round, missing)
                break
            await node.wait_for_change(remaining)
        ctx.updates = self.decode(ctx, [received[t] for t in ctx.trainset if t in received])

    @staticmethod
    def decode(ctx: RoundContext, messages: Sequence[Message]) -> list[Update]:
        updates = []
        for msg in messages:
            assert msg.model is not None
            try:
                params = ctx.node.pipeline.decode(msg.model.tensors, ctx.base)
            except CodecError as exc:
                log.warning("%s: round %d: rejected the update of %s: %s", ctx.node.id, ctx.round, msg.origin, exc)
                continue
            updates.append(
                Update(
                    params, msg.model.num_samples, frozenset(msg.model.contributors), ctx.round, dict(msg.model.extras)
                )
            )
        return updates


class Aggregate(Stage):
    name = "aggregate"

    async def run(self, ctx: RoundContext) -> None:
        node = ctx.node
        updates = sorted(ctx.updates, key=lambda u: sorted(u.contributors))
        if not updates:
            log.warning("%s: round %d: no update arrived; keeping the round's starting model", node.id, ctx.round)
            await self.keep_base(ctx)
            return
        try:
            ctx.aggregated = await node.runtime.in_worker(node.aggregator.aggregate, updates, ctx.base)
        except AggregationError as exc:
            log.error("%s: round %d: aggregation failed, keeping the starting model: %s", node.id, ctx.round, exc)
            await self.keep_base(ctx)
            return
        await node.adopt(ctx.aggregated)
        contributors = sorted(ctx.aggregated.contributors)
        ctx.metrics["contributors"] = len(contributors)
        node.notify(
            "p2pfl_model_aggregated",
            round=ctx.round,
            contributors=contributors,
            parameters=freeze(ctx.aggregated.parameters),
        )

    @staticmethod
    async def keep_base(ctx: RoundContext) -> None:
        """Every node (trainers too, whose learner holds their own update) falls back to the base."""
        await ctx.node.adopt(Update(ctx.base, 0, frozenset(), ctx.round, dict(ctx.node.round_extras)))


class Evaluate(Stage):
    name = "evaluate"

    async def run(self, ctx: RoundContext) -> None:
        node = ctx.node
        if node.settings.evaluate_every_round or ctx.round == ctx.plan.rounds:
            ctx.metrics.update(await node.runtime.in_worker(node.learner.evaluate))


class DefaultWorkflow(Workflow):
    """Synchronous rounds: train set draw, local training, update exchange, aggregation, evaluation."""

    name = "default"

    def __init__(self, stages: Sequence[Stage] | None = None) -> None:
        self.stages = (
            list(stages)
            if stages is not None
            else [
                SelectTrainSet(),
                LocalTraining(),
                ExchangeUpdates(),
                Aggregate(),
                Evaluate(),
            ]
        )

    async def run(self, node: Node, plan: LearningPlan, first_round: int) -> None:
        if first_round == 1:
            await self.agree_initial_model(node, plan)
        for r in range(first_round, plan.rounds + 1):
            ctx = RoundContext(node, plan, r, base=node.current_parameters())
            bytes_before = node.transport.bytes_sent
            node.begin_round(r)
            for stage in self.stages:
                await stage.run(ctx)
            ctx.metrics["bytes_sent"] = node.transport.bytes_sent - bytes_before
            ctx.metrics.update(node.pipeline.metrics())
            node.finish_round(r, ctx.metrics)

    @staticmethod
    async def agree_initial_model(node: Node, plan: LearningPlan) -> None:
        """Everyone starts from the initiator's model (sent as round 0)."""
        if plan.initiator == node.id:
            params = node.current_parameters()
            encoded = await node.runtime.in_worker(node.pipeline.encode, params, None)
            node.broadcast_round_message(INITIAL_MODEL, plan, 0, ModelPayload(encoded, 0, (node.id,)))
            return
        received = node.inbox(plan.id, 0)
        deadline = asyncio.get_running_loop().time() + node.settings.start_timeout
        while plan.initiator not in received:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or node.unavailable(plan.initiator):
                raise TimeoutError(f"{node.id}: the initial model from {plan.initiator} never arrived")
            await node.wait_for_change(remaining)
        msg = received[plan.initiator]
        assert msg.model is not None
        params = node.pipeline.decode(msg.model.tensors, None)
        await node.adopt(Update(params, 0, frozenset(), 0))


def sum_corrections(corrections: Iterable[GradientCorrection | None]) -> GradientCorrection | None:
    """Combine the callbacks' corrections (``None`` when there are none)."""
    total: GradientCorrection | None = None
    for c in corrections:
        if c is not None:
            total = c if total is None else total + c
    return total
