"""A p2pfl node: identity, transport, learner, aggregator, codecs and workflow.

The node is an asyncio object living on a :class:`~p2pfl.node.runtime.Runtime`; its public
methods are a synchronous facade for scripts (each has an ``async`` twin prefixed with ``a``
for code already on the loop). Message handlers never block: they update state and wake the
workflow through an event.

Example::

    from p2pfl.communication.memory import MemoryNetwork
    from p2pfl.node import Node

    net = MemoryNetwork()
    a = Node(model, data_a, protocol="memory", protocol_options={"network": net})
    b = Node(model_b, data_b, protocol="memory", protocol_options={"network": net})
    a.start(); b.start(); b.connect(a.address)
    a.start_learning(rounds=3, epochs=1)
    a.wait_finished(timeout=300); b.wait_finished(timeout=300)
    print(a.history[-1]["accuracy"]); a.stop(); b.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from p2pfl.aggregation.aggregator import Aggregator
from p2pfl.communication.gossip import Gossiper
from p2pfl.communication.transport import PeerUnavailableError, Transport, TransportOptions
from p2pfl.compression.codec import Codec, CodecPipeline
from p2pfl.learning.learner import FitResult, GradientCorrection, Learner, NodeData, TrainingCallback
from p2pfl.node.components import build_aggregator, build_codecs, build_learner, build_transport, lazy_decoders
from p2pfl.node.runtime import Runtime
from p2pfl.node.settings import NodeSettings
from p2pfl.parameters import Parameters, Update, freeze
from p2pfl.plugins import PluginManager, default_plugin_manager
from p2pfl.wire.message import Message, ModelPayload
from p2pfl.workflow.base import Workflow
from p2pfl.workflow.plan import LearningPlan, PlanError

log = logging.getLogger(__name__)

# message kinds handled by core (others are relayed, never executed)
HELLO, MEMBERS, GONE, START, STOP, SYNC = "hello", "members", "gone", "start_learning", "stop_learning", "sync"
ABANDON = "abandon"  # a node left the current experiment (it failed locally) but stays in the network
ROUND_KINDS = ("update", "model_init")
UNKNOWN_EXPERIMENT_BUFFER = 1024


class Node:
    """One participant of a decentralized federated learning network.

    Args:
        model: the framework model (or ``None`` if ``learner`` is an instance).
        data: this node's private data.
        learner: a registered learner name, a Learner class or instance; by default the
            learner whose ``model_types`` match the model's class.
        aggregator: a registered name (``"fedavg"``) or an Aggregator instance.
        protocol: a registered transport name (``"memory"``, ``"grpc"``) or an instance.
        address: where to listen (transport syntax; empty for a fresh memory address).
        node_id: the node's identity (random if omitted); distinct from its address.
        codecs: codec instances or ``{"name": ..., **params}`` specs, applied in order.
        workflow: a registered workflow name or instance.
        settings: this node's :class:`NodeSettings`.
        seed: seed of the learner (data shuffling, initialisation).
        learner_options, aggregator_options, protocol_options: keyword arguments of each.
        plugins: the plugin manager to resolve names with (the process default if omitted).
        runtime: an existing runtime to share (simulations); by default the node owns one.
    """

    def __init__(
        self,
        model: Any = None,
        data: NodeData | None = None,
        *,
        learner: str | type[Learner] | Learner | None = None,
        aggregator: str | Aggregator = "fedavg",
        protocol: str | Transport = "memory",
        address: str = "",
        node_id: str | None = None,
        codecs: Sequence[Codec | Mapping[str, Any]] = (),
        workflow: str | Workflow = "default",
        settings: NodeSettings | None = None,
        seed: int = 0,
        learner_options: Mapping[str, Any] | None = None,
        aggregator_options: Mapping[str, Any] | None = None,
        protocol_options: Mapping[str, Any] | None = None,
        plugins: PluginManager | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        self.id = node_id or f"node-{uuid.uuid4().hex[:8]}"
        self.settings = settings or NodeSettings()
        self.plugins = plugins or default_plugin_manager()
        self.learner = build_learner(self.plugins, learner, model, data, seed, dict(learner_options or {}))
        self.aggregator = build_aggregator(self.plugins, aggregator, dict(aggregator_options or {}))
        own_codecs = build_codecs(self.plugins, codecs, seed)
        self.pipeline = CodecPipeline(own_codecs, lazy_decoders(self.plugins, own_codecs))
        options = TransportOptions(
            send_timeout=self.settings.send_timeout, encode_messages=self.settings.encode_messages
        )
        self.transport = build_transport(
            self.plugins, protocol, self.id, address, options, dict(protocol_options or {})
        )
        self.workflow: Workflow = self.plugins.load("stages", workflow)() if isinstance(workflow, str) else workflow
        callback = self.aggregator.training_callback()
        self.training_callbacks: list[TrainingCallback] = [callback] if callback else []
        self._owns_runtime = runtime is None
        self.runtime = runtime or Runtime(workers=1, name=self.id)
        self.gossip = Gossiper(self.id, self.transport, self.settings.gossip_ttl, self.settings.dedup_capacity)

        self.members: set[str] = {self.id}  # nodes known to be alive
        self.gone: dict[str, str] = {}  # node id -> why it is gone
        self.abandoned: dict[str, str] = {}  # node id -> why it left the current experiment
        self.plan: LearningPlan | None = None
        self.round = 0
        self.status = "created"  # created -> idle -> learning -> finished/idle -> stopped
        self.history: list[dict[str, Any]] = []
        self.round_extras: dict[str, Parameters] = {}
        self._model: Parameters | None = None
        self._inbox: OrderedDict[tuple[str, int], dict[str, Message]] = OrderedDict()
        self._pending_sync: set[str] = set()
        self._changed: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._training: asyncio.Future[FitResult] | None = None
        self._finished = threading.Event()
        self._handlers = {
            HELLO: self._on_hello,
            MEMBERS: self._on_members,
            GONE: self._on_gone,
            START: self._on_start,
            STOP: self._on_stop,
            SYNC: self._on_sync,
            ABANDON: self._on_abandon,
        }

    # ================================================================== synchronous facade

    @property
    def address(self) -> str:
        """Where peers reach this node (after :meth:`start`)."""
        return self.transport.address

    def start(self) -> str:
        """Start listening; returns the address."""
        return self.runtime.run(self.astart())

    def connect(self, address: str) -> str:
        """Connect to the node at ``address``; returns its id."""
        return self.runtime.run(self.aconnect(address))

    def start_learning(self, rounds: int, epochs: int = 1, trainset_size: int | None = None, seed: int = 0) -> str:
        """Start an experiment on the whole network from this node; returns its id."""
        return self.runtime.run(self.astart_learning(rounds, epochs, trainset_size, seed))

    def stop_learning(self) -> None:
        """Stop the experiment on every node; training is interrupted and nodes become idle."""
        self.runtime.run(self.astop_learning())

    def wait_finished(self, timeout: float | None = None) -> bool:
        """Block until this node finished or left its experiment; False on timeout."""
        return self._finished.wait(timeout)

    def get_parameters(self) -> Parameters:
        """A copy of the node's current model parameters."""
        return self.runtime.run(self.runtime.in_worker(self.learner.get_parameters))

    def neighbors(self) -> list[str]:
        return self.runtime.call(self.transport.neighbors)

    def stop(self) -> None:
        """Leave the network and release everything. Idempotent."""
        if self.status == "stopped":
            return
        try:
            self.runtime.run(self.astop())
        finally:
            if self._owns_runtime:
                self.runtime.close()

    def __enter__(self) -> Node:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ================================================================== async API

    async def astart(self) -> str:
        self._changed = asyncio.Event()
        address = await self.transport.start(self)
        self.status = "idle"
        self.notify("p2pfl_node_started", address=address)
        return address

    async def aconnect(self, address: str) -> str:
        peer = await asyncio.wait_for(self.transport.connect(address), self.transport.options.connect_timeout)
        self.gone.pop(peer, None)
        self.members.add(peer)
        return peer

    async def astart_learning(
        self, rounds: int, epochs: int = 1, trainset_size: int | None = None, seed: int = 0
    ) -> str:
        if self.plan is not None and self.status == "learning":
            raise RuntimeError(f"{self.id} is already learning (experiment {self.plan.id})")
        members = tuple(sorted(self.members))
        plan = LearningPlan(
            id=uuid.uuid4().hex,
            rounds=rounds,
            epochs=epochs,
            trainset_size=min(trainset_size or len(members), len(members)),
            seed=seed,
            members=members,
            initiator=self.id,
        )
        LearningPlan.from_json(plan.to_json())  # same validation as the receivers'
        self.gossip.broadcast(Message(START, origin=self.id, args=(plan.to_json(),), experiment=plan.id))
        await self._begin(plan, first_round=1)
        return plan.id

    async def astop_learning(self) -> None:
        if self.plan is not None:
            self.gossip.broadcast(Message(STOP, origin=self.id, experiment=self.plan.id))
            await self._halt("stopped by " + self.id)

    async def astop(self) -> None:
        if self.status == "stopped":
            return
        await self._halt("node stopping")
        await self.gossip.drain()
        await self.transport.stop()
        self.status = "stopped"
        self._finished.set()
        self.notify("p2pfl_node_stopped")

    # ================================================================== learning lifecycle

    async def _begin(self, plan: LearningPlan, first_round: int) -> None:
        self.plan, self.round, self.status = plan, first_round - 1, "learning"
        self.abandoned.clear()
        await self._settle_training()  # a fit of a stopped experiment may still be returning
        self._finished.clear()
        if self._model is None or first_round == 1:
            self._model = freeze(await self.runtime.in_worker(self.learner.get_parameters))
        self._drop_other_experiments(plan.id)
        self._task = asyncio.get_running_loop().create_task(self._run_workflow(plan, first_round))

    async def _run_workflow(self, plan: LearningPlan, first_round: int) -> None:
        try:
            await self.workflow.run(self, plan, first_round)
            self.status = "finished"
            log.info("%s: experiment %s finished after round %d", self.id, plan.id[:8], self.round)
        except asyncio.CancelledError:
            self.status = "idle"
        except Exception as exc:
            log.exception("%s: experiment %s failed", self.id, plan.id[:8])
            self.status = "idle"
            # tell the others, so that nobody waits for our updates until the deadline
            self.gossip.broadcast(
                Message(ABANDON, origin=self.id, args=(f"{type(exc).__name__}: {exc}"[:500],), experiment=plan.id)
            )
        finally:
            self._finished.set()

    async def train(self, epochs: int, correction: GradientCorrection | None) -> FitResult:
        """Run the learner's fit in the worker pool; :meth:`_halt` can interrupt it."""
        fit = asyncio.get_running_loop().run_in_executor(self.runtime.executor, self.learner.fit, epochs, correction)
        self._training = fit
        fit.add_done_callback(lambda _: setattr(self, "_training", None) if self._training is fit else None)
        return await asyncio.shield(fit)  # cancelling the workflow must not orphan the thread unnoticed

    async def _halt(self, reason: str) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            log.info("%s: stopping learning (%s)", self.id, reason)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.status == "learning":
            self.status = "idle"
        self._finished.set()
        await self._settle_training()

    async def _settle_training(self) -> None:
        """Wait until a fit still running in its thread has returned, so the learner can be reused.

        An interrupt that lands just before the fit starts is lost, so it is repeated on a timer.
        """
        while (fit := self._training) is not None and not fit.done():
            self.learner.interrupt()
            await asyncio.wait([fit], timeout=0.5)

    def begin_round(self, r: int) -> None:
        """Called by workflows when round ``r`` starts: stale messages are dropped from now on."""
        self.round = r
        for key in [k for k in self._inbox if self.plan and k[0] == self.plan.id and k[1] < r]:
            del self._inbox[key]

    def finish_round(self, r: int, metrics: Mapping[str, Any]) -> None:
        """Called by workflows when round ``r`` ends: record and report its metrics."""
        entry = {"round": r, **metrics}
        self.history.append(entry)
        self.notify("p2pfl_metrics_reported", round=r, metrics=dict(metrics))
        self.notify("p2pfl_round_finished", round=r, metrics=dict(metrics))
        for peer in sorted(self._pending_sync):
            self._send_sync(peer, r + 1)
        self._pending_sync.clear()

    async def adopt(self, update: Update) -> None:
        """Make ``update`` this node's model (and the next round's base)."""
        await self.runtime.in_worker(self.learner.set_parameters, update.parameters)
        self._model = freeze(update.parameters)
        self.round_extras = dict(update.extras)

    def current_parameters(self) -> Parameters:
        """The model the current round started from (read-only arrays)."""
        assert self._model is not None
        return self._model

    def broadcast_round_message(self, kind: str, plan: LearningPlan, r: int, payload: ModelPayload) -> None:
        """Gossip a round-scoped model message and keep our own copy in the inbox."""
        msg = Message(kind, origin=self.id, round=r, model=payload, experiment=plan.id)
        self._inbox.setdefault((plan.id, r), {})[self.id] = msg
        self.gossip.broadcast(msg)
        self._wake()

    def inbox(self, experiment: str, r: int) -> dict[str, Message]:
        """Round-scoped model messages received for ``(experiment, r)``, by origin."""
        return self._inbox.setdefault((experiment, r), {})

    async def wait_for_change(self, timeout: float) -> None:
        """Wait until a message arrives or a peer is lost (or ``timeout`` passes)."""
        assert self._changed is not None
        self._changed.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    async def await_members(self, count: int, timeout: float) -> bool:
        """Wait until this node knows ``count`` live members (itself included); False on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.members) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            await self.wait_for_change(remaining)
        return True

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def notify(self, hook: str, **kwargs: Any) -> None:
        """Call a lifecycle hook of every plugin (errors are logged, never raised)."""
        self.plugins.notify(hook, node_id=self.id, **kwargs)

    # ================================================================== transport handler

    def on_peer_connected(self, peer_id: str, address: str) -> None:
        self.gone.pop(peer_id, None)
        self.members.add(peer_id)
        self.gossip.send(peer_id, Message(MEMBERS, origin=self.id, args=tuple(sorted(self.members))))
        self.gossip.broadcast(Message(HELLO, origin=self.id, args=(peer_id,)))
        if self.status == "learning" and self.plan is not None and peer_id not in self.plan.members:
            self._pending_sync.add(peer_id)  # a late joiner gets the model at the end of this round

    def on_peer_disconnected(self, peer_id: str, reason: str, failed: bool) -> None:
        self._mark_gone(peer_id, reason)
        self.gossip.broadcast(Message(GONE, origin=self.id, args=(peer_id, reason)))

    def on_message(self, message: Message) -> None:
        if not self.gossip.receive(message):
            return  # duplicate
        if message.kind in ROUND_KINDS:
            self._on_round_message(message)
            return
        handler = self._handlers.get(message.kind)
        if handler is None:
            log.debug("%s: relayed unknown message kind %r without executing it", self.id, message.kind)
            return
        try:
            handler(message)
        except (PlanError, ValueError) as exc:
            log.warning("%s: rejected %s: %s", self.id, message.describe(), exc)

    # ------------------------------------------------------------------ message handlers

    def _on_round_message(self, msg: Message) -> None:
        if msg.model is None or msg.round < 0:
            log.warning("%s: rejected %s: no model or no round", self.id, msg.describe())
            return
        if self.plan is not None and msg.experiment == self.plan.id:
            if msg.round < self.round or (self.status != "learning" and msg.round <= self.round):
                log.debug("%s: dropped stale %s (now in round %d)", self.id, msg.describe(), self.round)
                return
            if msg.round > self.round + 1 + self.settings.max_rounds_ahead:
                log.warning("%s: dropped %s: too far ahead of round %d", self.id, msg.describe(), self.round)
                return
        elif len(self._inbox) >= UNKNOWN_EXPERIMENT_BUFFER:
            self._inbox.popitem(last=False)  # bounded buffer for experiments we have not heard of yet
        self._inbox.setdefault((msg.experiment, msg.round), {}).setdefault(msg.origin, msg)
        self._wake()

    def _on_hello(self, msg: Message) -> None:
        """A gossiped announcement of members (its origin and the ids it lists)."""
        for node in (msg.origin, *msg.args):
            if node and node != self.id:
                self.members.add(node)
                self.gone.pop(node, None)
        self._wake()

    def _on_members(self, msg: Message) -> None:
        """A new neighbour's whole membership: announce what is new to our side of the network.

        Two parts of a network joined by a new edge thus learn each other completely, and any
        member learned later is announced by a flood that crosses every edge.
        """
        new = sorted(m for m in msg.args if m and m != self.id and m not in self.members and m not in self.gone)
        if new:
            self.members.update(new)
            self.gossip.broadcast(Message(HELLO, origin=self.id, args=tuple(new)))
            self._wake()

    def _on_gone(self, msg: Message) -> None:
        if not msg.args or msg.args[0] == self.id:
            return
        if msg.args[0] in self.transport.neighbors():
            return  # we still see it ourselves
        self._mark_gone(msg.args[0], f"{msg.args[1] if len(msg.args) > 1 else 'gone'}, reported by {msg.origin}")

    def _mark_gone(self, peer: str, reason: str) -> None:
        if peer in self.gone:
            return
        self.gone[peer] = reason
        self.members.discard(peer)
        self._pending_sync.discard(peer)
        log.info("%s: %s is gone (%s)", self.id, peer, reason)
        self._wake()

    def _on_start(self, msg: Message) -> None:
        plan = LearningPlan.from_json(msg.args[0] if msg.args else "")
        if self.plan is not None and self.plan.id == plan.id:
            return
        if self.status == "learning":
            log.warning(
                "%s: ignored experiment %s: already learning %s", self.id, plan.id[:8], self.plan and self.plan.id[:8]
            )
            return
        if self.id not in plan.members:
            log.info("%s: experiment %s started without us; waiting for a sync", self.id, plan.id[:8])
            return
        asyncio.get_running_loop().create_task(self._begin(plan, first_round=1))

    def _on_abandon(self, msg: Message) -> None:
        if self.plan is not None and msg.experiment == self.plan.id:
            self.abandoned[msg.origin] = f"left the experiment: {msg.args[0] if msg.args else 'failed'}"
            log.info("%s: %s %s", self.id, msg.origin, self.abandoned[msg.origin])
            self._wake()

    def unavailable(self, node_id: str) -> str | None:
        """Why ``node_id`` will not contribute to the current experiment, or None."""
        return self.gone.get(node_id) or self.abandoned.get(node_id)

    def _on_stop(self, msg: Message) -> None:
        if self.plan is not None and msg.experiment == self.plan.id and self.status == "learning":
            asyncio.get_running_loop().create_task(self._halt(f"stopped by {msg.origin}"))

    def _send_sync(self, peer: str, next_round: int) -> None:
        """Give a late joiner the plan, the next round number and the model that round starts from."""
        assert self.plan is not None and self._model is not None
        extras = {f"aggregator.{k}": v for k, v in self.aggregator.get_state().items()}
        extras.update(self.round_extras)
        encoded = self.pipeline.encode(self._model, None)
        payload = ModelPayload(encoded, 0, (self.id,), extras)
        self.gossip.send(
            peer,
            Message(
                SYNC,
                origin=self.id,
                round=next_round,
                args=(self.plan.to_json(),),
                model=payload,
                experiment=self.plan.id,
            ),
        )
        log.info("%s: sent the round-%d model to late joiner %s", self.id, next_round, peer)

    def _on_sync(self, msg: Message) -> None:
        if self.status == "learning" or msg.model is None or msg.round < 1:
            return
        plan = LearningPlan.from_json(msg.args[0] if msg.args else "")
        params = self.pipeline.decode(msg.model.tensors, None)
        extras = dict(msg.model.extras)
        state = {k.removeprefix("aggregator."): v for k, v in extras.items() if k.startswith("aggregator.")}
        round_extras = {k: v for k, v in extras.items() if not k.startswith("aggregator.")}
        asyncio.get_running_loop().create_task(self._join(plan, msg.round, params, state, round_extras))

    async def _join(self, plan: LearningPlan, first_round: int, params: Parameters, state: dict, extras: dict) -> None:
        self.aggregator.set_state(state)
        await self.adopt(Update(params, 0, frozenset(), first_round - 1, extras))
        log.info("%s: joined experiment %s at round %d", self.id, plan.id[:8], first_round)
        if first_round > plan.rounds:
            self.plan, self.status = plan, "finished"
            self._finished.set()
            return
        await self._begin(plan, first_round)

    def _drop_other_experiments(self, experiment: str) -> None:
        for key in [k for k in self._inbox if k[0] != experiment]:
            del self._inbox[key]


__all__ = ["Node", "NodeSettings", "PeerUnavailableError"]
