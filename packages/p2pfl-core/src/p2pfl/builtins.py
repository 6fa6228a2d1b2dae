"""Core's built-in components, registered through the same hooks as any plugin.

Targets are lazy ``"module:attr"`` strings so that ``p2pfl plugins list`` imports nothing
heavy (not even numpy).
"""

from __future__ import annotations

from typing import Any

from p2pfl.hookspecs import hookimpl


@hookimpl
def p2pfl_register_learners(register: Any) -> None:
    register("numpy", "p2pfl.learning.numpy_learner:NumpyLearner", model_types=["p2pfl.learning.numpy_learner.NumpyModel"])


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
    pass


@hookimpl
def p2pfl_register_partitioners(register: Any) -> None:
    pass


# --- topologies: p2pfl.topology ---------------------------------------------------------


@hookimpl
def p2pfl_register_topologies(register: Any) -> None:
    pass


# --- examples: p2pfl.examples -----------------------------------------------------------


@hookimpl
def p2pfl_register_examples(register: Any) -> None:
    pass
