"""Hook specifications of p2pfl: the whole contract between core and its plugins.

A plugin is a module (or object) with functions decorated by :data:`hookimpl` whose names
match the specifications below. Plugins are found through the ``p2pfl`` entry-point group
(see ``docs/plugins.md``).

Two families of hooks exist:

* **Registration hooks** ``p2pfl_register_<kind>(register)`` are called once per plugin
  manager, when a registry is first needed. Each receives ``register(name, target,
  **metadata)``; ``target`` is the component itself or a lazy ``"module:attr"`` string that
  is imported on first use, so that listing plugins never imports heavy frameworks.
* **Lifecycle hooks** are observers called by running nodes and experiments. They must
  return quickly (they run on the node's event loop) and must not mutate their arguments.
  An exception in an observer is logged and never stops a node.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT_NAME = "p2pfl"

#: Marker for hook specifications (for plugins that add hooks of their own).
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Marker for hook implementations: ``@hookimpl def p2pfl_register_aggregators(register): ...``
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: Component kinds and the registration hook of each.
KINDS: tuple[str, ...] = (
    "learners",
    "protocols",
    "aggregators",
    "compressors",
    "stages",
    "partitioners",
    "datasets",
    "topologies",
    "examples",
)

# --------------------------------------------------------------------------- registration


@hookspec
def p2pfl_register_learners(register: Any) -> None:
    """Register learners: classes implementing :class:`p2pfl.learning.Learner`.

    Metadata understood by core: ``model_types`` — fully qualified class names (e.g.
    ``"torch.nn.modules.module.Module"``); a node given a model whose class or a base class
    has one of these names picks this learner automatically, without importing anything.
    """


@hookspec
def p2pfl_register_protocols(register: Any) -> None:
    """Register communication protocols: classes implementing :class:`p2pfl.communication.Transport`."""


@hookspec
def p2pfl_register_aggregators(register: Any) -> None:
    """Register aggregators: classes implementing :class:`p2pfl.aggregation.Aggregator`."""


@hookspec
def p2pfl_register_compressors(register: Any) -> None:
    """Register update codecs: classes implementing :class:`p2pfl.compression.Codec`."""


@hookspec
def p2pfl_register_stages(register: Any) -> None:
    """Register workflows (classes implementing :class:`p2pfl.workflow.Workflow`)."""


@hookspec
def p2pfl_register_partitioners(register: Any) -> None:
    """Register data partitioners: callables ``(labels, num_nodes, seed, **params) -> list[indices]``."""


@hookspec
def p2pfl_register_datasets(register: Any) -> None:
    """Register datasets: callables ``(**params) -> p2pfl.data.DatasetSpec``."""


@hookspec
def p2pfl_register_topologies(register: Any) -> None:
    """Register topologies: callables ``(num_nodes, seed, **params) -> list[tuple[int, int]]``."""


@hookspec
def p2pfl_register_examples(register: Any) -> None:
    """Register runnable examples: a path to an experiment YAML file, or a callable returning a config dict.

    Metadata understood by core: ``description`` (one line shown by ``p2pfl examples list``).
    """


@hookspec
def p2pfl_register_commands(cli: Any) -> None:
    """Add subcommands to the ``p2pfl`` click group ``cli`` (``cli.add_command(...)``).

    Called only when the CLI starts; keep heavy imports inside the command functions.
    """


# --------------------------------------------------------------------------- lifecycle


@hookspec
def p2pfl_node_started(node_id: str, address: str) -> None:
    """A node started listening at ``address``."""


@hookspec
def p2pfl_node_stopped(node_id: str) -> None:
    """A node stopped and released its resources."""


@hookspec
def p2pfl_round_started(node_id: str, round: int, trainset: list[str]) -> None:
    """A node entered learning round ``round``; ``trainset`` lists the agreed trainers."""


@hookspec
def p2pfl_local_training_done(node_id: str, round: int, metrics: dict[str, float]) -> None:
    """A node finished its local training for ``round``; ``metrics`` are the learner's fit metrics."""


@hookspec
def p2pfl_model_aggregated(node_id: str, round: int, contributors: list[str], parameters: dict[str, Any]) -> None:
    """A node aggregated the round's model from ``contributors``; ``parameters`` is read-only."""


@hookspec
def p2pfl_metrics_reported(node_id: str, round: int, metrics: dict[str, float]) -> None:
    """A node reported its metrics for ``round`` (evaluation of the aggregated model, bytes sent...)."""


@hookspec
def p2pfl_round_finished(node_id: str, round: int, metrics: dict[str, float]) -> None:
    """A node finished ``round``; ``metrics`` is what it reported for that round."""


@hookspec
def p2pfl_experiment_finished(summary: dict[str, Any], output_dir: str | None) -> None:
    """An experiment run by ``p2pfl run`` finished; ``summary`` is what ``--json`` prints."""


REGISTRATION_HOOKS: dict[str, str] = {kind: f"p2pfl_register_{kind}" for kind in KINDS}
