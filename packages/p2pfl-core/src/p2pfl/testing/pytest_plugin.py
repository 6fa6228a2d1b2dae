"""The ``p2pfl.testing`` pytest plugin: fixtures for plugin authors.

Installed with ``p2pfl-core`` through the ``pytest11`` entry point, so every pytest run in
an environment with p2pfl sees these fixtures without any ``conftest.py``:

* ``p2pfl_plugin_manager`` — an isolated :class:`~p2pfl.plugins.manager.PluginManager`
  holding core's built-ins only (no entry-point discovery);
* ``p2pfl_register_plugin`` — register a plugin object or module for the current test only;
* ``make_node_data`` — a factory of small synthetic, learnable :class:`~p2pfl.learning.NodeData`;
* ``memory_cluster`` — a factory of N-node in-memory networks (:class:`~p2pfl.testing.network.MemoryCluster`)
  with a chosen learner, aggregator, codecs and workflow, closed when the test ends.

This module is imported by *every* pytest session of the environment, so it imports
nothing heavy at module level (numpy, datasets and p2pfl's submodules are imported inside
the fixtures).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from p2pfl.learning.learner import NodeData
    from p2pfl.plugins.manager import PluginInfo, PluginManager
    from p2pfl.testing.network import LearnerFactory, MemoryCluster
    from p2pfl.workflow import Workflow


@pytest.fixture
def p2pfl_plugin_manager() -> PluginManager:
    """A fresh plugin manager with core's built-ins only: nothing installed leaks in."""
    from p2pfl.plugins.manager import PluginManager

    return PluginManager(discover=False)


@pytest.fixture
def p2pfl_register_plugin(
    p2pfl_plugin_manager: PluginManager, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., PluginInfo]:
    """``register(plugin, name=None) -> PluginInfo``: make a plugin visible for this test only.

    The plugin is registered into the test's ``p2pfl_plugin_manager``, and that manager
    stands in for the process-wide :func:`~p2pfl.plugins.manager.default_plugin_manager`
    until the test ends, so code that looks components up by name (experiments, nodes)
    finds it too. An invalid plugin raises :class:`~p2pfl.plugins.manager.PluginError`.
    """
    from p2pfl.plugins import manager as manager_module

    monkeypatch.setattr(manager_module, "_default", p2pfl_plugin_manager)

    def register(plugin: Any, name: str | None = None) -> PluginInfo:
        return p2pfl_plugin_manager.register(plugin, name=name)

    return register


@pytest.fixture(scope="session")
def make_node_data() -> Callable[..., NodeData]:
    """A factory of synthetic :class:`~p2pfl.learning.NodeData`; see :func:`p2pfl.testing.data.synthetic_node_data`."""
    from p2pfl.testing.data import synthetic_node_data

    return synthetic_node_data


@pytest.fixture
def memory_cluster() -> Iterator[Callable[..., MemoryCluster]]:
    """``make(n=3, **options) -> MemoryCluster``: an N-node in-memory network, closed at teardown.

    Nodes are real :class:`~p2pfl.node.Node` objects on one
    :class:`~p2pfl.communication.memory.MemoryNetwork`, connected and discovered when
    ``make`` returns (unless ``start=False``). Components named by string are looked up
    in the process's plugin manager, which is the test's own manager once
    ``p2pfl_register_plugin`` was used: register your plugin *before* calling ``make``.

    Keyword arguments:
        learner: ``(index, node_data, seed) -> Learner`` (default: numpy softmax regression;
            :func:`p2pfl.testing.network.numpy_learner_factory` builds MLPs).
        aggregator: a registered aggregator name or an instance (default ``"fedavg"``);
            ``aggregator_options`` are its keyword arguments.
        codecs: codec instances or ``{"name": ..., **params}`` specs, applied in order.
        workflow: a registered workflow name (plugin kind ``stages``) or a zero-argument
            callable returning a :class:`~p2pfl.workflow.Workflow` (default: ``"default"``).
        edges: undirected ``(i, j)`` node-index pairs (default: a ring).
        data: ``(index) -> NodeData`` (default: :func:`iid_blobs`, one learnable task split
            evenly between the nodes).
        settings, plugins, workers, start: see :class:`~p2pfl.testing.network.MemoryCluster`.
    """
    clusters: list[MemoryCluster] = []

    def make(
        n: int = 3,
        *,
        learner: LearnerFactory | None = None,
        aggregator: Any = "fedavg",
        aggregator_options: Mapping[str, Any] | None = None,
        codecs: Sequence[Any] = (),
        workflow: str | Callable[[], Workflow] | None = None,
        edges: Sequence[tuple[int, int]] | None = None,
        data: Callable[[int], NodeData] | None = None,
        start: bool = True,
        **options: Any,
    ) -> MemoryCluster:
        from p2pfl.testing.network import MemoryCluster

        cluster = MemoryCluster(
            n,
            edges,
            data=data or iid_blobs(n),
            learner=learner,
            aggregator=aggregator,
            aggregator_options=aggregator_options,
            codecs=codecs,
            start=False,
            **options,
        )
        clusters.append(cluster)
        if workflow is not None:
            for node in cluster.nodes:  # one workflow object per node: workflows may keep state
                node.workflow = node.plugins.load("stages", workflow)() if isinstance(workflow, str) else workflow()
        if start:
            cluster.start()
        return cluster

    yield make
    for cluster in reversed(clusters):
        cluster.close()


def iid_blobs(n: int, rows_per_node: int = 120, num_test: int = 60, seed: int = 0) -> Callable[[int], NodeData]:
    """``(index) -> NodeData``: one synthetic blob dataset, its train split cut into ``n`` equal parts.

    Every node gets ``rows_per_node`` training rows of the same task and the same test split,
    so a federation of working components reaches the accuracy of a single learner.
    """
    from dataclasses import replace

    from p2pfl.testing.data import synthetic_node_data

    full = synthetic_node_data(num_train=rows_per_node * n, num_test=num_test, seed=seed)
    return lambda index: replace(full, train=full.train.shard(num_shards=n, index=index, contiguous=True))
