"""An N-node in-memory network for tests: real nodes, real gossip, one shared runtime.

Example::

    with MemoryCluster(6, edges=ring_edges(6)) as cluster:
        cluster.learn(rounds=3)
        assert cluster.agree()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from p2pfl.communication.memory import MemoryNetwork
from p2pfl.learning.learner import Learner, NodeData
from p2pfl.node.node import Node
from p2pfl.node.runtime import Runtime
from p2pfl.node.settings import NodeSettings
from p2pfl.parameters import parameters_digest
from p2pfl.plugins import PluginManager

#: ``(index, node_data, seed) -> Learner``
LearnerFactory = Callable[[int, NodeData, int], Learner]


def numpy_learner_factory(hidden: Sequence[int] = (), lr: float = 0.1) -> LearnerFactory:
    """Numpy learners with the same architecture on every node."""

    def make(index: int, data: NodeData, seed: int) -> Learner:
        import math

        from p2pfl.learning.numpy_learner import NumpyLearner, NumpyModel

        dim = math.prod(data.input_shape) if data.input_shape else len(data.numpy("train")[0][0])
        return NumpyLearner(NumpyModel(dim, data.num_classes, hidden=hidden, seed=seed), data, seed=seed, lr=lr)

    return make


def ring_edges(n: int) -> list[tuple[int, int]]:
    return [(i, (i + 1) % n) for i in range(n)] if n > 2 else line_edges(n)


def line_edges(n: int) -> list[tuple[int, int]]:
    return [(i, i + 1) for i in range(n - 1)]


def full_edges(n: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


class MemoryCluster:
    """``n`` nodes on one :class:`MemoryNetwork`, connected by ``edges``.

    Args:
        n: number of nodes (ids ``n00``, ``n01``...).
        edges: undirected edges between node indices (default: a ring).
        learner: factory of each node's learner (default: numpy softmax regression).
        data: factory ``(index) -> NodeData`` (default: synthetic blobs seeded by index).
        aggregator, codecs, settings, plugins, workers: passed to every node.
        node_options: extra keyword arguments of :class:`~p2pfl.node.Node`.
    """

    def __init__(
        self,
        n: int,
        edges: Sequence[tuple[int, int]] | None = None,
        *,
        learner: LearnerFactory | None = None,
        data: Callable[[int], NodeData] | None = None,
        aggregator: Any = "fedavg",
        aggregator_options: Mapping[str, Any] | None = None,
        codecs: Sequence[Any] = (),
        settings: NodeSettings | None = None,
        plugins: PluginManager | None = None,
        workers: int = 2,
        start: bool = True,
    ) -> None:
        from p2pfl.testing.data import synthetic_node_data

        self.network = MemoryNetwork()
        self.runtime = Runtime(workers=workers, name="p2pfl-test")
        self.settings = settings or NodeSettings()
        self._learner = learner or numpy_learner_factory()
        self._data = data or (lambda i: synthetic_node_data(seed=i))
        self._node_kwargs = dict(
            aggregator=aggregator, aggregator_options=aggregator_options, codecs=codecs, plugins=plugins
        )
        width = max(2, len(str(n - 1)))
        self.nodes = [self.new_node(f"n{i:0{width}d}", i) for i in range(n)]
        self.edges = list(edges) if edges is not None else ring_edges(n)
        if start:
            self.start()

    def new_node(self, node_id: str, index: int) -> Node:
        """A node on this cluster's network and runtime (not started)."""
        data = self._data(index)
        return Node(
            learner=self._learner(index, data, index),
            node_id=node_id,
            protocol="memory",
            protocol_options={"network": self.network},
            settings=self.settings,
            runtime=self.runtime,
            **self._node_kwargs,
        )

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        for i, j in self.edges:
            self.nodes[i].connect(self.nodes[j].address)
        first = self.nodes[0]
        if not self.runtime.run(first.await_members(len(self.nodes), 60)):
            raise RuntimeError("the cluster's nodes did not all discover each other")

    def learn(
        self, rounds: int, epochs: int = 1, trainset_size: int | None = None, seed: int = 0, timeout: float = 300
    ) -> bool:
        """Start learning from node 0 and wait until every live node finished."""
        self.nodes[0].start_learning(rounds, epochs, trainset_size, seed)
        return self.wait(timeout)

    def wait(self, timeout: float = 300, nodes: Sequence[Node] | None = None) -> bool:
        return all(node.wait_finished(timeout) for node in (nodes or self.nodes))

    def digests(self, nodes: Sequence[Node] | None = None) -> list[str]:
        return [parameters_digest(node.get_parameters()) for node in (nodes or self.nodes)]

    def agree(self, nodes: Sequence[Node] | None = None) -> bool:
        """True if the given nodes (default all) hold bit-identical models."""
        return len(set(self.digests(nodes))) == 1

    def kill(self, node: Node) -> None:
        """Crash a node: its neighbours see a failure; it sends nothing more."""
        self.network.kill(node.address)

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        self.runtime.close()

    def __enter__(self) -> MemoryCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
