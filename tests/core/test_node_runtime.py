"""The core runtime: nodes on an in-memory network run the default workflow (issue 3)."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from p2pfl.learning.learner import FitResult, GradientCorrection
from p2pfl.learning.numpy_learner import NumpyLearner, NumpyModel
from p2pfl.node import NodeSettings
from p2pfl.testing.data import synthetic_node_data
from p2pfl.testing.network import MemoryCluster, full_edges, line_edges, ring_edges
from p2pfl.wire import Message, ModelPayload, encode_message

DEADLINE = 120  # generous: an event that does not come within this is a failure, not a slow machine


class GatedLearner(NumpyLearner):
    """A numpy learner whose fit, in chosen rounds, announces itself and waits to be released."""

    def __init__(self, *args, gate_calls=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.gate_calls = set(gate_calls)  # fit call numbers (1-based) that block
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def fit(self, epochs: int, correction: GradientCorrection | None = None) -> FitResult:
        self.calls += 1
        if self.calls in self.gate_calls:
            self.entered.set()
            self.release.wait(DEADLINE)
        return super().fit(epochs, correction)

    def interrupt(self) -> None:
        super().interrupt()
        self.release.set()


def gated_factory(gates: dict[int, set[int]]):
    def make(index, data, seed):
        model = NumpyModel(8, data.num_classes, seed=seed)
        return GatedLearner(model, data, seed=seed, gate_calls=gates.get(index, ()))

    return make


@pytest.mark.parametrize("n", [2, 6, 20])
@pytest.mark.parametrize("topology", ["ring", "line", "full"])
def test_nodes_agree_exactly_after_rounds(n, topology):
    edges = {"ring": ring_edges, "line": line_edges, "full": full_edges}[topology](n)
    with MemoryCluster(n, edges) as cluster:
        assert cluster.learn(rounds=3, timeout=DEADLINE)
        assert [node.status for node in cluster.nodes] == ["finished"] * n
        assert cluster.agree()
        for node in cluster.nodes:
            assert [h["round"] for h in node.history] == [1, 2, 3]
            assert node.history[-1]["contributors"] == n


def test_aggregate_equals_fedavg_computed_by_hand():
    """The model every node ends round 1 with is the sample-weighted mean of the trainers' models."""
    sizes = [40, 80, 120]
    with MemoryCluster(3, full_edges(3), data=lambda i: synthetic_node_data(num_train=sizes[i], seed=i)) as cluster:
        # train three independent copies from the same initial model to know each update
        init = cluster.nodes[0].get_parameters()
        expected_parts = []
        for i in range(3):
            data = synthetic_node_data(num_train=sizes[i], seed=i)
            twin = NumpyLearner(NumpyModel(8, data.num_classes, seed=i), data, seed=i)
            twin.set_parameters(init)
            twin.fit(1)
            expected_parts.append(twin.get_parameters())
        assert cluster.learn(rounds=1, timeout=DEADLINE)
        got = cluster.nodes[2].get_parameters()
    total = sum(sizes)
    for name, value in got.items():
        by_hand = sum(part[name].astype(np.float64) * s / total for part, s in zip(expected_parts, sizes))
        np.testing.assert_array_equal(value, by_hand.astype(np.float32))


def test_same_seed_gives_same_trainsets_and_identical_models():
    digests = []
    for _ in range(2):
        with MemoryCluster(6, ring_edges(6)) as cluster:
            assert cluster.learn(rounds=3, trainset_size=3, seed=7, timeout=DEADLINE)
            plan = cluster.nodes[0].plan
            digests.append((cluster.digests()[0], [plan.trainset(r) for r in (1, 2, 3)]))
    assert digests[0] == digests[1]
    assert all(len(ts) == 3 for ts in digests[0][1])


def test_dead_trainer_is_dropped_at_once(caplog):
    """A trainer killed mid-round: the others finish without waiting for the deadline, and say why."""
    caplog.set_level(logging.INFO, logger="p2pfl")
    settings = NodeSettings(aggregation_timeout=3600)  # far beyond the test's own deadline
    with MemoryCluster(5, ring_edges(5), learner=gated_factory({3: {1}}), settings=settings) as cluster:
        victim = cluster.nodes[3]
        cluster.nodes[0].start_learning(rounds=2)
        assert victim.learner.entered.wait(DEADLINE)
        cluster.kill(victim)
        victim.learner.release.set()
        survivors = [n for i, n in enumerate(cluster.nodes) if i != 3]
        assert cluster.wait(DEADLINE, survivors), "survivors waited for the aggregation deadline"
        assert cluster.agree(survivors)
        assert all(n.history[0]["contributors"] == 4 for n in survivors)
    assert f"not waiting for {victim.id}" in caplog.text
    assert "connection lost" in caplog.text


def test_late_joiner_gets_the_model_and_takes_part_next_round():
    with MemoryCluster(4, ring_edges(4), learner=gated_factory({2: {1}})) as cluster:
        cluster.nodes[0].start_learning(rounds=3)
        assert cluster.nodes[2].learner.entered.wait(DEADLINE)  # round 1 is under way at node 2
        joiner = cluster.new_node("late", 9)
        joiner.start()
        joiner.connect(cluster.nodes[2].address)
        cluster.nodes[2].learner.release.set()
        everyone = [*cluster.nodes, joiner]
        assert cluster.wait(DEADLINE, everyone)
        assert joiner.status == "finished"
        assert [h["round"] for h in joiner.history] == [2, 3]
        assert cluster.agree(everyone)
        joiner.stop()


def test_stop_learning_interrupts_and_nodes_are_reusable():
    with MemoryCluster(4, ring_edges(4), learner=gated_factory({1: {1}})) as cluster:
        cluster.nodes[0].start_learning(rounds=50)
        assert cluster.nodes[1].learner.entered.wait(DEADLINE)
        cluster.nodes[0].stop_learning()
        assert cluster.wait(DEADLINE)
        assert [n.status for n in cluster.nodes] == ["idle"] * 4
        assert all(len(n.history) < 50 for n in cluster.nodes)
        # the same nodes run a new experiment to the end
        assert cluster.learn(rounds=2, timeout=DEADLINE)
        assert [n.status for n in cluster.nodes] == ["finished"] * 4
        assert cluster.agree()


def test_early_message_is_kept_and_stale_one_dropped():
    with MemoryCluster(3, full_edges(3), learner=gated_factory({1: {2}})) as cluster:
        node, peer = cluster.nodes[1], cluster.nodes[2]
        cluster.nodes[0].start_learning(rounds=3)
        assert node.learner.entered.wait(DEADLINE)  # node is training in round 2 now
        plan = node.plan
        model = payload_of(node)
        early = Message("update", origin="ghost", sender=peer.id, round=3, model=model, experiment=plan.id)
        stale = Message("update", origin="ghost", sender=peer.id, round=1, model=model, experiment=plan.id)
        for msg in (early, stale):
            cluster.network.inject(node.address, encode_message(msg), peer.id)
        inbox3 = node.runtime.call(lambda: dict(node.inbox(plan.id, 3)))
        inbox1 = node.runtime.call(lambda: dict(node._inbox.get((plan.id, 1), {})))
        assert "ghost" in inbox3
        assert "ghost" not in inbox1
        node.learner.release.set()
        assert cluster.wait(DEADLINE)
        assert cluster.agree()


def payload_of(node):
    """A well-formed model payload holding the node's current model."""
    encoded = node.pipeline.encode(node.current_parameters(), None)
    return ModelPayload(encoded, 10, ("ghost",))


HOSTILE = [
    pytest.param(b"\x00\x01garbage\xff" * 7, id="random-bytes"),
    pytest.param(None, id="truncated"),
    pytest.param("absurd", id="absurd-size"),
]


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_bytes_do_not_stop_a_node(payload, caplog):
    caplog.set_level(logging.WARNING, logger="p2pfl")
    with MemoryCluster(3, full_edges(3), learner=gated_factory({1: {1}})) as cluster:
        node, peer = cluster.nodes[1], cluster.nodes[2]
        cluster.nodes[0].start_learning(rounds=2)
        assert node.learner.entered.wait(DEADLINE)
        good = Message("update", origin=peer.id, round=1, model=payload_of(node), experiment=node.plan.id)
        data = encode_message(good)
        if payload is None:
            payload = data[: len(data) // 2]
        elif payload == "absurd":
            payload = _absurd_tensor(good)
        cluster.network.inject(node.address, payload, peer.id)
        node.learner.release.set()
        assert cluster.wait(DEADLINE)
        assert [n.status for n in cluster.nodes] == ["finished"] * 3
        assert cluster.agree()
    assert "malformed message" in caplog.text


def _absurd_tensor(msg: Message) -> bytes:
    from p2pfl.wire.encoding import message_to_proto

    env = message_to_proto(msg.with_fields(msg_id="evil"))
    env.model.tensors[0].shape[:] = [2**40, 2**40]
    return env.SerializeToString()


def test_unknown_kind_is_relayed_but_not_executed(caplog):
    caplog.set_level(logging.DEBUG, logger="p2pfl.node")
    with MemoryCluster(3, line_edges(3)) as cluster:
        a, _, c = cluster.nodes
        arrived = threading.Event()
        handle = c.on_message

        def observe(message):  # c is two hops from a: only a relay can bring the message
            handle(message)
            if message.kind == "plugin-x":
                arrived.set()

        c.on_message = observe
        msg = Message("plugin-x", origin=a.id, args=("hello",))
        a.runtime.call(lambda: a.gossip.broadcast(msg))
        assert arrived.wait(DEADLINE)
        assert c.status == "idle"
    assert "relayed unknown message kind 'plugin-x' without executing it" in caplog.text


def test_two_hundred_nodes_use_a_bounded_number_of_threads():
    peak = 0

    class Probe:
        from p2pfl.hookspecs import hookimpl

        @hookimpl
        def p2pfl_round_finished(self, node_id, round, metrics):
            nonlocal peak
            peak = max(peak, threading.active_count())

    from p2pfl.plugins import PluginManager

    plugins = PluginManager(discover=False)
    plugins.register(Probe(), name="probe")
    with MemoryCluster(
        200, ring_edges(200), plugins=plugins, data=lambda i: synthetic_node_data(num_train=20, num_test=10, seed=i)
    ) as cluster:
        assert cluster.learn(rounds=1, trainset_size=10, timeout=600)
        assert cluster.agree()
    assert 0 < peak < 20, f"{peak} threads for 200 nodes"


@pytest.mark.parametrize("edges", [[(0, 1), (2, 3), (1, 2)], [(0, 1), (2, 3), (4, 5), (1, 2), (3, 4)]])
def test_parts_joined_later_learn_every_member(edges):
    """Edges added between already-formed parts: every node still learns every other node."""
    n = max(max(e) for e in edges) + 1
    with MemoryCluster(n, edges, start=False) as cluster:
        for node in cluster.nodes:
            node.start()
        for i, j in edges:
            cluster.nodes[i].connect(cluster.nodes[j].address)
        assert all(cluster.runtime.run(node.await_members(n, DEADLINE)) for node in cluster.nodes)
        assert cluster.learn(rounds=1, timeout=DEADLINE)
        assert cluster.agree()


class BrokenLearner(NumpyLearner):
    def fit(self, epochs, correction=None):
        raise RuntimeError("out of memory")


def test_node_failing_locally_tells_the_others(caplog):
    """A trainer whose fit raises leaves the experiment and says so: nobody waits for the deadline."""
    caplog.set_level(logging.INFO, logger="p2pfl")

    def make(index, data, seed):
        cls = BrokenLearner if index == 2 else NumpyLearner
        return cls(NumpyModel(8, data.num_classes, seed=seed), data, seed=seed)

    settings = NodeSettings(aggregation_timeout=3600)
    with MemoryCluster(4, ring_edges(4), learner=make, settings=settings) as cluster:
        survivors = [n for i, n in enumerate(cluster.nodes) if i != 2]
        cluster.nodes[0].start_learning(rounds=2)
        assert cluster.wait(DEADLINE, survivors)
        assert [n.status for n in survivors] == ["finished"] * 3
        assert cluster.nodes[2].status == "idle"
        assert cluster.agree(survivors)
    assert "left the experiment: RuntimeError: out of memory" in caplog.text
