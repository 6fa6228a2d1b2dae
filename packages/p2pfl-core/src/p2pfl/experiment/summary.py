"""The summary of a finished (or interrupted) experiment: what ``p2pfl run --json`` prints."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from p2pfl.node.node import Node
from p2pfl.parameters import Parameters, parameters_digest


def _last(history: Sequence[Mapping[str, Any]], key: str) -> Any:
    for entry in reversed(history):
        if key in entry:
            return entry[key]
    return None


def node_summary(node: Node, params: Parameters) -> dict[str, Any]:
    history = node.history
    return {
        "node": node.id,
        "status": node.status,
        "rounds_completed": len(history),
        "accuracy": _last(history, "accuracy"),
        "loss": _last(history, "loss"),
        "bytes_sent": int(sum(entry.get("bytes_sent", 0) for entry in history)),
        "model_digest": parameters_digest(params),
    }


def summarize(
    cfg: Mapping[str, Any], nodes: Sequence[Node], params: Sequence[Parameters], wall: float, interrupted: bool
) -> dict[str, Any]:
    """The summary of nodes run in this process (see :func:`summarize_records`)."""
    per_node = [node_summary(n, p) for n, p in zip(nodes, params)]
    return summarize_records(cfg, per_node, {n.id: list(n.history) for n in nodes}, wall, interrupted)


def summarize_records(
    cfg: Mapping[str, Any],
    per_node: Sequence[dict[str, Any]],
    histories: Mapping[str, list[dict[str, Any]]],
    wall: float,
    interrupted: bool,
) -> dict[str, Any]:
    """Summary fields: ``nodes``, ``rounds``, ``final_accuracy`` (mean over nodes),
    ``final_accuracy_min``, ``wall_seconds``, ``bytes_sent``, ``per_node``, ``history``...

    ``per_node`` holds :func:`node_summary` records; nodes with status ``crashed`` (a process
    that died) count for bytes only: the figures are over the nodes that ran to the end.
    """
    alive = [p for p in per_node if p["status"] != "crashed"]
    accuracies = [p["accuracy"] for p in alive if p["accuracy"] is not None]
    losses = [p["loss"] for p in alive if p["loss"] is not None]
    total_bytes = sum(p["bytes_sent"] for p in per_node)
    rounds_done = min((p["rounds_completed"] for p in alive), default=0)
    return {
        "name": cfg["name"],
        "nodes": len(per_node),
        "rounds": cfg["training"]["rounds"],
        "rounds_completed": rounds_done,
        "final_accuracy": statistics.fmean(accuracies) if accuracies else None,
        "final_accuracy_min": min(accuracies) if accuracies else None,
        "final_loss": statistics.fmean(losses) if losses else None,
        "wall_seconds": round(wall, 3),
        "bytes_sent": total_bytes,
        "bytes_per_round": total_bytes / rounds_done if rounds_done else None,
        "models_agree": bool(alive) and len({p["model_digest"] for p in alive}) == 1,
        "interrupted": interrupted,
        "crashed": [p["node"] for p in per_node if p["status"] == "crashed"],
        "per_node": list(per_node),
        "history": dict(histories),
    }
