"""End to end on MNIST: 1 of 6 nodes sends scaled or random updates every round.

``median``, ``trimmed-mean``, ``krum`` and ``geometric-median`` must end within 3 accuracy
points of the honest FedAvg run while FedAvg under the same attack degrades by more than
10 points; every node must end with the same model.

The attacker is node 5, made Byzantine by the runner's ``attack`` config section.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from p2pfl.experiment import run_experiment

pytestmark = pytest.mark.slow

BYZANTINE = 5
CONFIG: dict[str, Any] = {
    "seed": 0,
    "network": {"nodes": 6, "topology": "full", "protocol": "memory"},
    "data": {"dataset": "mnist", "partitioning": {"name": "iid"}, "batch_size": 64},
    "model": {"learner": "numpy", "build": "p2pfl.examples.models:softmax", "options": {"lr": 0.1}},
    "training": {"rounds": 8, "epochs": 1, "trainset_size": 6},
    "aggregator": {"name": "fedavg"},
    "output": {"dir": None, "plots": False},
}


ATTACKS = {"scale": {"kind": "scale", "factor": -10.0}, "random": {"kind": "random", "scale": 1.0}}


def run(aggregator: dict, attack: str | None) -> dict:
    config = copy.deepcopy(CONFIG)
    config["aggregator"] = aggregator
    if attack:
        config["attack"] = {"nodes": [BYZANTINE], **ATTACKS[attack]}
    summary = run_experiment(config)
    assert summary["rounds_completed"] == CONFIG["training"]["rounds"]
    assert summary["models_agree"]
    return summary


ROBUST = [
    {"name": "median", "f": 1},
    {"name": "trimmed-mean", "beta": 0.2},
    {"name": "krum", "f": 1},
    {"name": "geometric-median"},
]


@pytest.mark.parametrize("attack", ["scale", "random"])
def test_robust_aggregators_resist_one_byzantine_node(attack):
    honest = run({"name": "fedavg"}, None)["final_accuracy"]
    attacked = run({"name": "fedavg"}, attack)["final_accuracy"]
    robust = {spec["name"]: run(spec, attack)["final_accuracy"] for spec in ROBUST}
    print(f"attack={attack}: honest fedavg {honest:.4f}, attacked fedavg {attacked:.4f}, robust {robust}")
    assert attacked < honest - 0.10
    for name, accuracy in robust.items():
        assert accuracy >= honest - 0.03, (name, accuracy, honest)
