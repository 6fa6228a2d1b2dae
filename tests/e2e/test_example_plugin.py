"""The example third-party plugin (examples/plugins/p2pfl-example) end to end (issue 11).

Installed from its folder (the dev environment installs it as a workspace member), it must be
listed with its three components, and an experiment must use all three by name: the
``norm-clipped-mean`` aggregator, the ``float16`` codec and the CSV round observer.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from importlib import metadata

import pytest
import yaml

# Runs in the dev environment, where the example is installed (not in the core-only one).
pytestmark = pytest.mark.framework

DIST = "p2pfl-example"
try:
    metadata.distribution(DIST)
except metadata.PackageNotFoundError:
    pytest.skip(
        f"{DIST} is not installed: pip install -e examples/plugins/p2pfl-example (a dev workspace member)",
        allow_module_level=True,
    )

NODES, ROUNDS = 3, 2


def p2pfl(*args: str, env: dict[str, str] | None = None, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p2pfl", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def test_listed_with_its_three_components():
    result = p2pfl("plugins", "list", "--json")
    assert result.returncode == 0, result.stderr
    plugin = {p["name"]: p for p in json.loads(result.stdout)}[DIST]
    assert plugin["status"] == "ok" and plugin["distribution"] == DIST and plugin["version"]
    assert plugin["module"] == "p2pfl_example.plugin"
    assert plugin["provides"] == {"aggregators": ["norm-clipped-mean"], "compressors": ["float16"]}
    assert "p2pfl_round_finished" in plugin["hooks"]  # the lifecycle observer
    pins = p2pfl("plugins", "list", "--requirements").stdout.splitlines()
    assert f"{DIST}=={metadata.version(DIST)}" in pins


def test_experiment_uses_all_three_by_name(tmp_path):
    rounds_csv, out = tmp_path / "rounds.csv", tmp_path / "out"
    result = p2pfl(
        "run", "mnist", "--json", "--quiet", "--output", str(out),
        "--set", f"network.nodes={NODES}",
        "--set", f"training.rounds={ROUNDS}",
        "--set", "model.params.hidden=[16]",
        "--set", "aggregator.name=norm-clipped-mean",
        "--set", "aggregator.max_norm=5.0",
        "--set", "compression=[{name: float16}]",
        env={"P2PFL_EXAMPLE_CSV": str(rounds_csv)},
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rounds_completed"] == ROUNDS and summary["models_agree"]
    assert summary["final_accuracy"] > 0.5  # ten classes: chance is 0.1

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["aggregator"] == {"name": "norm-clipped-mean", "max_norm": 5.0}
    assert config["compression"] == [{"name": "float16"}]

    # What the runner recorded, per node and round (a path independent of the observer).
    recorded = {(r["node"], r["round"]): r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}
    assert len(recorded) == NODES * ROUNDS
    assert all(r["float16.saved_bytes"] > 0 for r in recorded.values())  # the codec encoded every update

    # The observer: one CSV row per node per round, with the same figures.
    with rounds_csv.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == NODES * ROUNDS
    assert {(row["node"], int(row["round"])) for row in rows} == set(recorded)
    for row in rows:
        expected = recorded[row["node"], int(row["round"])]
        assert float(row["accuracy"]) == expected["accuracy"]
        assert float(row["loss"]) == expected["loss"]
        assert int(row["bytes_sent"]) == expected["bytes_sent"]
    final = {n["node"]: n["accuracy"] for n in summary["per_node"]}
    assert {row["node"]: float(row["accuracy"]) for row in rows if int(row["round"]) == ROUNDS} == final
