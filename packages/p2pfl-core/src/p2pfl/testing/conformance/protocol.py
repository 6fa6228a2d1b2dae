"""``ProtocolConformance``: the checks every transport (plugin kind ``protocols``) must pass.

Subclass it in a test module under a name starting with ``Test`` and implement
:meth:`~ProtocolConformance.create_transport` and :meth:`~ProtocolConformance.crash`
(and, to run the malformed-input check, :meth:`~ProtocolConformance.send_raw`)::

    class TestMemoryTransport(ProtocolConformance):
        @pytest.fixture(autouse=True)
        def _network(self):
            self.network = MemoryNetwork()

        def create_transport(self, node_id):
            return MemoryTransport(node_id, network=self.network)

        def crash(self, transport):
            self.network.kill(transport.address)

        def send_raw(self, sender, receiver, data):
            self.network.inject(receiver.address, data, sender.node_id)

Each check runs in a fresh event loop (``asyncio.run``), where the transports are started,
so subclasses need no async test plugin. Every wait is for an event, with a deadline
(:attr:`~ProtocolConformance.timeout`); nothing sleeps. Node ids are ``node-0``,
``node-1``, ... (valid DNS names, so a TLS transport can have certificates made for them).
A failing check reports ``conformance: <rule> (rule protocol.<id>): <details>``.

The same tools serve a transport's own extra tests: :meth:`ProtocolConformance.nodes` (an
async context manager giving N started transports, each with a :class:`Recorder` of its
events), :meth:`ProtocolConformance.link` and :func:`sample_message`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

import ml_dtypes
import numpy as np
import pytest

from p2pfl.communication.transport import PeerUnavailableError, Transport, TransportError
from p2pfl.compression.codec import EncodedTensors
from p2pfl.parameters import parameters_equal
from p2pfl.wire.encoding import encode_message
from p2pfl.wire.message import Message, ModelPayload

#: rule id -> what the transport must do.
PROTOCOL_RULES: dict[str, str] = {
    "protocol.start": "start must return the address peers dial (also .address), with no neighbours yet",
    "protocol.stop": "stop must succeed, and a second stop must do nothing",
    "protocol.loop": "the handler must be called on the node's event loop",
    "protocol.connect": "connect must return the peer's id and make both sides neighbours, each told once "
    "through on_peer_connected with the other's address",
    "protocol.connect-unreachable": "connect to an address where nothing listens must raise PeerUnavailableError",
    "protocol.deliver": "send must deliver the message unchanged: id, kind, origin, sender, round, args, ttl, "
    "covered, experiment, and the model with bit-identical tensors, codecs and bookkeeping",
    "protocol.order": "messages sent one after another to one peer must arrive in that order",
    "protocol.leave": "a peer that stops must be seen by its neighbours as a clean leave (failed=False)",
    "protocol.disconnect": "disconnect must drop the neighbour on both sides, seen by both as a clean leave",
    "protocol.crash": "a peer that crashes must be seen by its neighbours as a failure (failed=True)",
    "protocol.independent": "a crashed neighbour must not keep a node from exchanging messages with the others",
    "protocol.gone": "send to a peer that is gone, or was never a neighbour, must raise PeerUnavailableError",
    "protocol.sender": "a message whose sender field names another node must be dropped, not delivered",
    "protocol.malformed": "malformed bytes must be dropped without stopping the transport or the connection",
}


def violated(rule: str, detail: str = "") -> NoReturn:
    """Fail the current test for breaking ``rule``."""
    message = f"conformance: {PROTOCOL_RULES[rule]} (rule {rule})"
    pytest.fail(f"{message}: {detail}" if detail else message, pytrace=False)


def check(condition: object, rule: str, detail: str = "") -> None:
    """Fail the current test for breaking ``rule`` unless ``condition`` holds."""
    if not condition:
        violated(rule, detail)


@contextlib.contextmanager
def rule(rule_id: str) -> Iterator[None]:
    """Attribute an unexpected exception raised by the transport inside the block to ``rule_id``."""
    try:
        yield
    except (pytest.fail.Exception, pytest.skip.Exception):
        raise
    except Exception as exc:
        pytest.fail(
            f"conformance: {PROTOCOL_RULES[rule_id]} (rule {rule_id}): raised {type(exc).__name__}: {exc}", pytrace=True
        )


class Recorder:
    """A :class:`~p2pfl.communication.transport.TransportHandler` that records every event.

    Create it inside the event loop that runs the transport; :meth:`wait_for` waits for a
    condition on the recorded events (woken by each event, no polling).
    """

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.messages: list[Message] = []
        self.connected: list[tuple[str, str]] = []
        self.disconnected: list[tuple[str, str, bool]] = []
        self.wrong_loop: list[str] = []
        self._changed = asyncio.Event()

    def _record(self, event: str) -> None:
        try:
            on_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            on_loop = False
        if not on_loop:
            self.wrong_loop.append(event)
        self._changed.set()

    def on_message(self, message: Message) -> None:
        self.messages.append(message)
        self._record(f"on_message({message.describe()})")

    def on_peer_connected(self, peer_id: str, address: str) -> None:
        self.connected.append((peer_id, address))
        self._record(f"on_peer_connected({peer_id})")

    def on_peer_disconnected(self, peer_id: str, reason: str, failed: bool) -> None:
        self.disconnected.append((peer_id, reason, failed))
        self._record(f"on_peer_disconnected({peer_id})")

    def message(self, msg_id: str) -> Message | None:
        return next((m for m in self.messages if m.msg_id == msg_id), None)

    def departure(self, peer_id: str) -> tuple[str, str, bool] | None:
        return next((d for d in self.disconnected if d[0] == peer_id), None)

    async def wait_for(self, predicate: Callable[[], object], what: str, timeout: float) -> None:
        """Return once ``predicate()`` holds; raise ``TimeoutError`` naming ``what`` after ``timeout`` s."""
        deadline = self.loop.time() + timeout
        while not predicate():
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                raise TimeoutError(f"waited {timeout}s for {what}")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)


@dataclass
class Node:
    """A started transport and the recorder of what it reported."""

    transport: Transport
    events: Recorder

    @property
    def node_id(self) -> str:
        return self.transport.node_id

    @property
    def address(self) -> str:
        return self.transport.address


def sample_message(origin: str, kind: str = "model", seed: int = 0, **fields: Any) -> Message:
    """A message carrying a model with every kind of tensor real models have, plus codec metadata and extras."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {
        "dense.weight": rng.normal(size=(4, 3)).astype(np.float32),
        "dense.bias": rng.normal(size=(3,)).astype(np.float64),
        "half": rng.normal(size=(2, 2)).astype(np.float16),
        "brain": rng.normal(size=(5,)).astype(ml_dtypes.bfloat16),
        "bn.num_batches_tracked": np.array(7, dtype=np.int64),
        "mask": np.array([True, False, True]),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    model = ModelPayload(
        tensors=EncodedTensors(tensors, [("pipeline", {"codecs": ["none"], "n": 1})], delta=False),
        num_samples=123,
        contributors=(origin, "node-x"),
        extras={"scaffold.delta_c": {"dense.bias": rng.normal(size=(3,)).astype(np.float32)}},
    )
    values: dict[str, Any] = {
        "round": 3,
        "args": ("a", "b c", ""),
        "ttl": 2,
        "covered": frozenset({origin, "node-y"}),
        "experiment": "exp-1",
        "model": model,
    }
    values.update(fields)
    return Message(kind=kind, origin=origin, **values)


def _differences(sent: Message, got: Message) -> list[str]:
    out = [
        f"{name}: sent {getattr(sent, name)!r}, got {getattr(got, name)!r}"
        for name in ("msg_id", "kind", "origin", "sender", "round", "args", "ttl", "covered", "experiment")
        if getattr(sent, name) != getattr(got, name)
    ]
    if (sent.model is None) != (got.model is None):
        return [*out, "model: present on one side only"]
    if sent.model is not None and got.model is not None:
        a, b = sent.model, got.model
        if not parameters_equal(a.tensors.arrays, b.tensors.arrays):
            out.append("model tensors differ (names, order, dtypes, shapes or bytes)")
        if (a.tensors.codecs, a.tensors.delta) != (b.tensors.codecs, b.tensors.delta):
            out.append(f"codecs: sent {a.tensors.codecs, a.tensors.delta}, got {b.tensors.codecs, b.tensors.delta}")
        if (a.num_samples, tuple(a.contributors)) != (b.num_samples, tuple(b.contributors)):
            out.append("num_samples or contributors differ")
        if list(a.extras) != list(b.extras) or any(not parameters_equal(a.extras[k], b.extras[k]) for k in a.extras):
            out.append("extras differ")
    return out


class ProtocolConformance:
    """Conformance suite for :class:`~p2pfl.communication.transport.Transport` implementations."""

    #: seconds allowed for each awaited event (a connection, a delivery, a failure report)
    timeout: float = 30.0
    #: seconds allowed for one whole check
    test_timeout: float = 180.0

    # ------------------------------------------------------------------ to implement

    def create_transport(self, node_id: str) -> Transport:
        """A new, not yet started transport for ``node_id``, able to reach the others this test creates."""
        raise NotImplementedError("subclasses of ProtocolConformance implement create_transport(node_id)")

    def crash(self, transport: Transport) -> Awaitable[None] | None:
        """Make ``transport`` vanish as a crashed process would: no goodbye (may be a coroutine)."""
        raise NotImplementedError("subclasses of ProtocolConformance implement crash(transport)")

    def send_raw(self, sender: Transport, receiver: Transport, data: bytes) -> Awaitable[None] | None:
        """Deliver ``data`` to ``receiver`` as if ``sender`` sent it as a message (may be a coroutine).

        Optional: without it, the malformed-input check is skipped.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ tools

    def run(self, scenario: Callable[[], Awaitable[None]]) -> None:
        """Run ``scenario()`` in a fresh event loop, within :attr:`test_timeout`."""

        async def bounded() -> None:
            await asyncio.wait_for(scenario(), self.test_timeout)

        asyncio.run(bounded())

    @contextlib.asynccontextmanager
    async def nodes(self, count: int) -> AsyncIterator[list[Node]]:
        """``count`` started transports (``node-0`` ...); stopped again on exit."""
        started: list[Node] = []
        try:
            for i in range(count):
                transport = self.create_transport(f"node-{i}")
                events = Recorder()
                with rule("protocol.start"):
                    address = await transport.start(events)
                check(isinstance(address, str) and address, "protocol.start", f"start returned {address!r}")
                check(transport.address == address, "protocol.start", f".address {transport.address!r} != {address!r}")
                check(transport.neighbors() == [], "protocol.start", f"neighbours at start: {transport.neighbors()}")
                started.append(Node(transport, events))
            yield started
        finally:
            for node in started:
                with rule("protocol.stop"):
                    await node.transport.stop()
        for node in started:
            check(not node.events.wrong_loop, "protocol.loop", f"{node.node_id}: {node.events.wrong_loop}")

    async def wait(self, node: Node, predicate: Callable[[], object], rule_id: str, what: str) -> None:
        """Wait for ``predicate`` on ``node``'s events; a timeout fails ``rule_id``."""
        try:
            await node.events.wait_for(predicate, what, self.timeout)
        except TimeoutError as exc:
            violated(rule_id, f"{node.node_id}: {exc}")

    async def link(self, a: Node, b: Node) -> None:
        """Connect ``a`` to ``b`` and wait until both report the other as a neighbour."""
        with rule("protocol.connect"):
            peer = await a.transport.connect(b.address)
        check(peer == b.node_id, "protocol.connect", f"connect returned {peer!r}, expected {b.node_id!r}")
        await self.wait(
            a,
            lambda: any(p == b.node_id for p, _ in a.events.connected),
            "protocol.connect",
            f"on_peer_connected({b.node_id})",
        )
        await self.wait(
            b,
            lambda: any(p == a.node_id for p, _ in b.events.connected),
            "protocol.connect",
            f"on_peer_connected({a.node_id})",
        )

    async def _call_hook(self, result: Awaitable[None] | None) -> None:
        if inspect.isawaitable(result):
            await result

    async def _deliver(self, a: Node, b: Node, message: Message, rule_id: str) -> Message:
        with rule(rule_id):
            await a.transport.send(b.node_id, message)
        await self.wait(
            b,
            lambda: b.events.message(message.msg_id) is not None,
            rule_id,
            f"message {message.describe()} from {a.node_id}",
        )
        got = b.events.message(message.msg_id)
        assert got is not None
        return got

    # ------------------------------------------------------------------ checks

    def test_start_stop(self) -> None:
        async def scenario() -> None:
            async with self.nodes(1) as (node,):
                with rule("protocol.stop"):
                    await node.transport.stop()
                    await node.transport.stop()

        self.run(scenario)

    def test_connect_makes_neighbours(self) -> None:
        async def scenario() -> None:
            async with self.nodes(3) as (a, b, c):
                await self.link(a, b)
                check(
                    dict(a.events.connected).get(b.node_id) == b.address,
                    "protocol.connect",
                    f"{a.node_id} was told address {dict(a.events.connected).get(b.node_id)!r}, not {b.address!r}",
                )
                check(
                    dict(b.events.connected).get(a.node_id) == a.address,
                    "protocol.connect",
                    f"{b.node_id} was told address {dict(b.events.connected).get(a.node_id)!r}, not {a.address!r}",
                )
                await self.link(c, a)  # the other way round: a accepts
                check(
                    a.transport.neighbors() == sorted([b.node_id, c.node_id]),
                    "protocol.connect",
                    f"{a.node_id} neighbours: {a.transport.neighbors()}",
                )
                check(
                    b.transport.neighbors() == [a.node_id],
                    "protocol.connect",
                    f"{b.node_id} neighbours: {b.transport.neighbors()}",
                )
                with rule("protocol.connect"):
                    again = await a.transport.connect(b.address)
                check(again == b.node_id, "protocol.connect", f"a second connect returned {again!r}")
                told = [p for p, _ in a.events.connected if p == b.node_id]
                check(len(told) == 1, "protocol.connect", f"{a.node_id} was told {len(told)} times about {b.node_id}")

        self.run(scenario)

    def test_connect_unreachable(self) -> None:
        async def scenario() -> None:
            async with self.nodes(2) as (a, gone):
                address = gone.address
                await gone.transport.stop()
                try:
                    await a.transport.connect(address)
                except PeerUnavailableError:
                    pass
                else:
                    violated("protocol.connect-unreachable", f"connect({address!r}) returned")
                check(
                    a.transport.neighbors() == [],
                    "protocol.connect-unreachable",
                    f"neighbours after a failed connect: {a.transport.neighbors()}",
                )

        self.run(scenario)

    def test_send_delivers_same_message(self) -> None:
        async def scenario() -> None:
            async with self.nodes(2) as (a, b):
                await self.link(a, b)
                sent = sample_message(a.node_id)
                got = await self._deliver(a, b, sent, "protocol.deliver")
                problems = _differences(sent, got)
                check(not problems, "protocol.deliver", "; ".join(problems))
                control = Message(kind="vote", origin=b.node_id, round=0, args=("x",))
                back = await self._deliver(b, a, control, "protocol.deliver")
                problems = _differences(control, back)
                check(not problems, "protocol.deliver", "(no model) " + "; ".join(problems))

        self.run(scenario)

    def test_messages_arrive_in_order(self) -> None:
        async def scenario() -> None:
            async with self.nodes(2) as (a, b):
                await self.link(a, b)
                sent = [Message(kind="seq", origin=a.node_id, args=(str(i),)) for i in range(20)]
                with rule("protocol.order"):
                    for message in sent:
                        await a.transport.send(b.node_id, message)
                await self.wait(b, lambda: len(b.events.messages) >= len(sent), "protocol.order", "20 messages")
                got = [m.args[0] for m in b.events.messages]
                check(got == [m.args[0] for m in sent], "protocol.order", f"arrived as {got}")

        self.run(scenario)

    def test_stop_is_a_clean_leave(self) -> None:
        async def scenario() -> None:
            async with self.nodes(2) as (a, b):
                await self.link(a, b)
                with rule("protocol.stop"):
                    await b.transport.stop()
                await self.wait(
                    a, lambda: a.events.departure(b.node_id), "protocol.leave", f"on_peer_disconnected({b.node_id})"
                )
                departure = a.events.departure(b.node_id)
                assert departure is not None
                check(departure[2] is False, "protocol.leave", f"reported as failed: {departure[1]!r}")
                check(a.transport.neighbors() == [], "protocol.leave", f"neighbours: {a.transport.neighbors()}")
                try:
                    await a.transport.send(b.node_id, Message(kind="late", origin=a.node_id))
                except PeerUnavailableError:
                    pass
                else:
                    violated("protocol.gone", f"send to {b.node_id}, which left, did not raise PeerUnavailableError")

        self.run(scenario)

    def test_disconnect_is_a_clean_leave(self) -> None:
        async def scenario() -> None:
            async with self.nodes(2) as (a, b):
                await self.link(a, b)
                with rule("protocol.disconnect"):
                    await a.transport.disconnect(b.node_id)
                check(
                    b.node_id not in a.transport.neighbors(),
                    "protocol.disconnect",
                    f"{b.node_id} still a neighbour of {a.node_id}",
                )
                await self.wait(
                    b,
                    lambda: b.events.departure(a.node_id),
                    "protocol.disconnect",
                    f"on_peer_disconnected({a.node_id})",
                )
                departure = b.events.departure(a.node_id)
                assert departure is not None
                check(departure[2] is False, "protocol.disconnect", f"reported as failed: {departure[1]!r}")
                mine = a.events.departure(b.node_id)
                check(
                    mine is not None and mine[2] is False,
                    "protocol.disconnect",
                    f"{a.node_id} was not told (failed=False) that {b.node_id} is gone: {mine}",
                )
                check(b.transport.neighbors() == [], "protocol.disconnect", f"neighbours: {b.transport.neighbors()}")

        self.run(scenario)

    def test_crash_is_a_failure(self) -> None:
        async def scenario() -> None:
            async with self.nodes(3) as (a, b, c):
                await self.link(a, b)
                await self.link(a, c)
                await self._call_hook(self.crash(b.transport))
                # c keeps working whether or not a has noticed b yet
                await self._deliver(a, c, Message(kind="ping", origin=a.node_id), "protocol.independent")
                await self._deliver(c, a, Message(kind="pong", origin=c.node_id), "protocol.independent")
                await self.wait(
                    a, lambda: a.events.departure(b.node_id), "protocol.crash", f"on_peer_disconnected({b.node_id})"
                )
                departure = a.events.departure(b.node_id)
                assert departure is not None
                check(departure[2] is True, "protocol.crash", f"reported as a clean leave: {departure[1]!r}")
                check(
                    a.transport.neighbors() == [c.node_id], "protocol.crash", f"neighbours: {a.transport.neighbors()}"
                )
                for target in (b.node_id, "node-never-seen"):
                    try:
                        await a.transport.send(target, Message(kind="late", origin=a.node_id))
                    except PeerUnavailableError:
                        continue
                    violated("protocol.gone", f"send to {target} did not raise PeerUnavailableError")

        self.run(scenario)

    def test_forged_sender_is_dropped(self) -> None:
        async def scenario() -> None:
            async with self.nodes(3) as (a, b, c):
                await self.link(a, b)
                await self.link(c, b)
                forged = [
                    Message(kind="forged", origin=c.node_id),  # sender defaults to origin: c
                    Message(kind="forged", origin=a.node_id, sender=c.node_id),
                    sample_message(c.node_id, kind="forged"),
                ]
                for message in forged:
                    with contextlib.suppress(TransportError):  # a transport may also refuse it to the sender
                        await a.transport.send(b.node_id, message)
                # messages from one peer arrive in order: once the marker is in, the forged ones were handled
                await self._deliver(a, b, Message(kind="marker", origin=a.node_id), "protocol.sender")
                leaked = [m.describe() for m in b.events.messages if m.kind == "forged"]
                check(not leaked, "protocol.sender", f"delivered: {leaked}")
                check(a.node_id in b.transport.neighbors(), "protocol.sender", "the honest connection was dropped")

        self.run(scenario)

    def test_malformed_bytes_are_dropped(self) -> None:
        async def scenario() -> None:
            async with self.nodes(2) as (a, b):
                await self.link(a, b)
                valid = encode_message(sample_message(a.node_id))
                garbage = [
                    b"",
                    bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)),
                    b"\xff" * 64,
                    valid[: len(valid) // 2],
                    valid[:-1],
                ]
                for data in garbage:
                    try:
                        await self._call_hook(self.send_raw(a.transport, b.transport, data))
                    except NotImplementedError:
                        pytest.skip("send_raw is not implemented for this transport")
                    except TransportError:
                        pass  # refused to the sender: fine, as long as the transport keeps working
                await self._deliver(a, b, Message(kind="marker", origin=a.node_id), "protocol.malformed")
                check(
                    [m.kind for m in b.events.messages] == ["marker"],
                    "protocol.malformed",
                    f"delivered: {[m.describe() for m in b.events.messages]}",
                )
                check(b.transport.neighbors() == [a.node_id], "protocol.malformed", "the connection was dropped")
                await self._deliver(b, a, Message(kind="marker", origin=b.node_id), "protocol.malformed")

        self.run(scenario)
