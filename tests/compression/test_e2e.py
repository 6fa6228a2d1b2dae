"""End to end on MNIST: topk 1% + quantize int8 + zlib against no compression (issue 10).

Same seed, same rounds, same data: only the codec pipeline differs. The compressed run must
send at least 20x fewer bytes per round and end within 3 accuracy points.
"""

from __future__ import annotations

import copy

import pytest

pytestmark = pytest.mark.slow

experiment = pytest.importorskip("p2pfl.experiment")
if not hasattr(experiment, "run_experiment"):
    pytest.skip("p2pfl.experiment.run_experiment is not available", allow_module_level=True)

CONFIG = {
    "seed": 0,
    "network": {"nodes": 4, "topology": "ring", "protocol": "memory"},
    "data": {"dataset": "mnist", "partitioning": {"name": "iid"}, "batch_size": 32},
    # softmax regression keeps the run to seconds; an MLP behaves alike (more rounds needed)
    "model": {"learner": "numpy", "build": "p2pfl.examples.models:softmax", "options": {"lr": 0.1, "momentum": 0.9}},
    "training": {"rounds": 10, "epochs": 1, "trainset_size": 4},
    "aggregator": {"name": "fedavg"},
    "output": {"dir": None, "plots": False},
}
COMPRESSION = [{"name": "topk", "k": 0.01}, {"name": "quantize", "bits": 8}, {"name": "zlib", "level": 6}]


def run(compression: list[dict]) -> dict:
    config = copy.deepcopy(CONFIG)
    config["compression"] = compression
    return experiment.run_experiment(config)


def test_topk_quantize_zlib_sends_20x_fewer_bytes_within_3_points():
    plain = run([])
    compressed = run(COMPRESSION)
    rounds = CONFIG["training"]["rounds"]
    assert plain["rounds_completed"] == compressed["rounds_completed"] == rounds
    # same rounds in both runs: the ratio of totals is the ratio of bytes per round
    ratio = plain["bytes_sent"] / compressed["bytes_sent"]
    assert ratio >= 20, f"only {ratio:.1f}x fewer bytes"
    assert compressed["final_accuracy"] >= plain["final_accuracy"] - 0.03, (
        plain["final_accuracy"],
        compressed["final_accuracy"],
    )
