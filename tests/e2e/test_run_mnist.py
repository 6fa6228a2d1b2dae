"""`p2pfl run` end to end on the built-in MNIST with the numpy learner (issue 4)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

SMALL = [
    "--set",
    "network.nodes=4",
    "--set",
    "training.rounds=2",
    "--set",
    "training.epochs=1",
    "--set",
    "model.params.hidden=[32]",
]


def run(tmp_path, *extra):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "p2pfl", "run", "mnist", "--json", "--output", str(out), *SMALL, *extra],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), out, result.stderr


def test_run_mnist_json_and_outputs(tmp_path):
    summary, out, stderr = run(tmp_path)
    assert set(summary) >= {
        "nodes",
        "rounds",
        "final_accuracy",
        "final_accuracy_min",
        "wall_seconds",
        "bytes_sent",
        "per_node",
    }
    assert summary["nodes"] == 4 and summary["rounds"] == 2 and summary["rounds_completed"] == 2
    accuracies = [n["accuracy"] for n in summary["per_node"]]
    assert summary["final_accuracy"] == sum(accuracies) / 4
    assert summary["final_accuracy_min"] == min(accuracies)
    assert summary["final_accuracy"] > 0.5  # ten classes: chance is 0.1
    assert summary["models_agree"] and len({n["model_digest"] for n in summary["per_node"]}) == 1
    assert summary["bytes_sent"] == sum(n["bytes_sent"] for n in summary["per_node"]) > 0
    # the output directory
    for name in ("config.yaml", "metrics.jsonl", "metrics.csv", "summary.json", "accuracy.png", "loss.png"):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * 2 and {r["round"] for r in rows} == {1, 2}
    with (out / "metrics.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 8
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert "round   2/2" in stderr and "all nodes hold the same model" in stderr


def test_same_seed_same_metrics(tmp_path):
    first, _, _ = run(tmp_path / "a")
    second, _, _ = run(tmp_path / "b")
    strip = lambda s: [{k: v for k, v in n.items()} for n in s["per_node"]]  # noqa: E731
    assert strip(first) == strip(second)
    third, _, _ = run(tmp_path / "c", "--set", "seed=1")
    assert third["per_node"][0]["model_digest"] != first["per_node"][0]["model_digest"]
