"""End to end: nodes train the mnist-torch example together and agree on one model."""

from __future__ import annotations

import pytest

from p2pfl_torch.examples import mnist_torch

pytestmark = [pytest.mark.framework, pytest.mark.slow]


def test_four_nodes_train_mnist_torch_for_two_rounds_and_agree() -> None:
    experiment = pytest.importorskip("p2pfl.experiment")
    summary = experiment.run_experiment(
        mnist_torch(), ["network.nodes=4", "training.rounds=2", "training.epochs=1", "training.trainset_size=4"]
    )
    assert summary["nodes"] == 4 and summary["rounds"] == 2
    per_node = summary["per_node"]
    assert len(per_node) == 4
    assert len({node["model_digest"] for node in per_node}) == 1, per_node
    # 10 classes: chance is 0.1; two short rounds already reach far more.
    assert all(node["accuracy"] > 0.5 for node in per_node), per_node
    assert summary["final_accuracy"] > 0.5
