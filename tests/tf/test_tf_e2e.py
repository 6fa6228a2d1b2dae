"""End to end: 4 nodes train mnist-tf for 2 rounds through the experiment runner and agree."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.framework, pytest.mark.slow]

experiment = pytest.importorskip("p2pfl.experiment")


def test_four_nodes_train_mnist_tf_and_agree() -> None:
    run_experiment = getattr(experiment, "run_experiment", None)
    if run_experiment is None:
        pytest.skip("p2pfl.experiment.run_experiment is not available yet")
    from p2pfl_tf.examples import mnist_tf

    summary = run_experiment(mnist_tf(), ["network.nodes=4", "training.rounds=2", "training.trainset_size=4"])
    per_node = summary["per_node"]
    assert len(per_node) == 4
    assert summary.get("rounds_completed", summary["rounds"]) == 2
    assert len({node["model_digest"] for node in per_node}) == 1
    assert all(node["accuracy"] > 0.3 for node in per_node)  # chance is 0.1
