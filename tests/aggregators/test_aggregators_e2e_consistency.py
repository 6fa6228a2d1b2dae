"""End to end on MNIST: every aggregator is usable by name in an experiment, and all nodes
end with the same model, including nodes that did not train in some rounds (the train set
is smaller than the network) for the stateful ones (server optimizers, SCAFFOLD)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

experiment = pytest.importorskip("p2pfl.experiment")
if not hasattr(experiment, "run_experiment"):
    pytest.skip("p2pfl.experiment.run_experiment is not available", allow_module_level=True)

from p2pfl_aggregators import plugin as aggregators_plugin  # noqa: E402

#: aggregators that need every one of the 7 nodes in the train set (min_updates)
NEEDS_ALL = {"bulyan", "krum", "multi-krum", "trimmed-mean"}


@pytest.mark.parametrize("name", sorted(aggregators_plugin.AGGREGATORS))
def test_usable_by_name_and_nodes_agree(p2pfl_register_plugin, name):
    p2pfl_register_plugin(aggregators_plugin, name="p2pfl-aggregators")
    config = {
        "seed": 1,
        "network": {"nodes": 7, "topology": "ring", "protocol": "memory"},
        "data": {"dataset": "mnist", "partitioning": {"name": "iid"}, "batch_size": 64},
        "model": {"learner": "numpy", "build": "p2pfl.examples.models:softmax", "options": {"lr": 0.1}},
        "training": {"rounds": 3, "epochs": 1, "trainset_size": 7 if name in NEEDS_ALL else 4},
        "aggregator": {"name": name},
        "output": {"dir": None, "plots": False},
    }
    summary = experiment.run_experiment(config)
    assert summary["rounds_completed"] == 3
    assert summary["models_agree"], [n["model_digest"] for n in summary["per_node"]]
    assert summary["final_accuracy"] > 0.3  # ten classes: chance is 0.1
