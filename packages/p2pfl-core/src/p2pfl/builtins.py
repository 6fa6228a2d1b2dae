"""Core's built-in components, registered through the same hooks as any plugin.

Targets are lazy ``"module:attr"`` strings so that ``p2pfl plugins list`` imports nothing
heavy (not even numpy).
"""

from __future__ import annotations

from typing import Any

from p2pfl.hookspecs import hookimpl


@hookimpl
def p2pfl_register_learners(register: Any) -> None:
    register(
        "numpy", "p2pfl.learning.numpy_learner:NumpyLearner", model_types=["p2pfl.learning.numpy_learner.NumpyModel"]
    )


@hookimpl
def p2pfl_register_protocols(register: Any) -> None:
    register("memory", "p2pfl.communication.memory:MemoryTransport")


@hookimpl
def p2pfl_register_aggregators(register: Any) -> None:
    register("fedavg", "p2pfl.aggregation.fedavg:FedAvg")


@hookimpl
def p2pfl_register_stages(register: Any) -> None:
    register("default", "p2pfl.workflow.default:DefaultWorkflow", description="synchronous rounds, DESIGN §5")


# --- data (datasets, partitioners): p2pfl.data ------------------------------------------


@hookimpl
def p2pfl_register_datasets(register: Any) -> None:
    loaders = "p2pfl.data.loaders"
    register("mnist", f"{loaders}:mnist", description="5,000 MNIST digits shipped with p2pfl-core (offline)")
    register("files", f"{loaders}:from_files", description="local parquet, CSV, JSON, arrow files or an image folder")
    register("hub", f"{loaders}:from_hub", description="a Hugging Face Hub dataset by name (needs a network)")


@hookimpl
def p2pfl_register_partitioners(register: Any) -> None:
    partitioners = "p2pfl.data.partitioners"
    register("iid", f"{partitioners}:iid", description="uniformly random, equal sizes")
    register("dirichlet", f"{partitioners}:dirichlet", description="label skew from Dir(alpha); min_size")
    register("shards", f"{partitioners}:shards", description="pathological non-IID: label-sorted shards per node")
    register("label-skew", f"{partitioners}:label_skew", description="exactly labels_per_node classes per node")
    register("quantity-skew", f"{partitioners}:quantity_skew", description="power-law sizes (exponent), IID labels")


# --- topologies: p2pfl.topology ---------------------------------------------------------


@hookimpl
def p2pfl_register_topologies(register: Any) -> None:
    topology = "p2pfl.topology"
    register("full", f"{topology}:full", description="every pair of nodes connected")
    register("ring", f"{topology}:ring", description="a cycle")
    register("line", f"{topology}:line", description="a path")
    register("star", f"{topology}:star", description="all nodes connected to center (default 0)")
    register("random-regular", f"{topology}:random_regular", description="connected random k-regular graph")
    register("erdos-renyi", f"{topology}:erdos_renyi", description="G(n, p), components joined to connect it")
    register("small-world", f"{topology}:small_world", description="connected Watts-Strogatz graph (k, p)")
    register("edges", f"{topology}:from_edges", description="an explicit edge list")


# --- examples: p2pfl.examples -----------------------------------------------------------


@hookimpl
def p2pfl_register_examples(register: Any) -> None:
    register("mnist", "p2pfl.examples:mnist", description="numpy MLP, 8 nodes on a ring, IID MNIST digits")
