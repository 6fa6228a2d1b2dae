"""A user's install (issue 8): only the wheels of p2pfl-core, p2pfl-flax and p2pfl-grpc in a
fresh virtual environment; the plugins are discovered and `mnist-flax` runs over grpc."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.framework, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = ("p2pfl-core", "p2pfl-flax", "p2pfl-grpc")


def run(cmd, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, **kwargs)
    assert result.returncode == 0, f"{cmd}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("fresh")
    wheels = root / "wheels"
    outside_hatch = {k: v for k, v in os.environ.items() if not k.startswith("HATCH_")}  # (a nested run)
    for dist in DISTRIBUTIONS:
        run(
            [sys.executable, "-m", "hatch", "build", "-t", "wheel", str(wheels)],
            cwd=ROOT / "packages" / dist,
            env=outside_hatch,
        )
    run([sys.executable, "-m", "venv", str(root / "venv")])
    bin_dir = root / "venv" / "bin"
    run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", *map(str, sorted(wheels.glob("*.whl")))])
    return bin_dir


def test_only_the_installed_plugins_are_listed(venv):
    listed = json.loads(run([str(venv / "p2pfl"), "plugins", "list", "--json"]).stdout)
    by_name = {p["name"]: p for p in listed}
    assert set(by_name) == {"p2pfl-core", "p2pfl-flax", "p2pfl-grpc"}
    assert all(p["status"] == "ok" for p in listed)
    assert "flax" in by_name["p2pfl-flax"]["provides"]["learners"]
    assert "grpc" in by_name["p2pfl-grpc"]["provides"]["protocols"]
    missing = run(
        [
            str(venv / "python"),
            "-c",
            "import importlib.util as u; print([m for m in ('torch', 'tensorflow') if u.find_spec(m)])",
        ]
    ).stdout.strip()
    assert missing == "[]"


def test_mnist_flax_runs_over_grpc(venv, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    result = run(
        [
            str(venv / "p2pfl"),
            "run",
            "mnist-flax",
            "--json",
            "-q",
            "--output",
            str(tmp_path / "out"),
            "--set",
            "network.protocol=grpc",
            "--set",
            "network.protocol_options.insecure=true",
            "--set",
            "network.nodes=3",
            "--set",
            "training.rounds=1",
        ],
        cwd=tmp_path,
        env=env,
    )
    summary = json.loads(result.stdout)
    assert summary["nodes"] == 3 and summary["rounds_completed"] == 1
    assert summary["models_agree"]
    assert summary["final_accuracy"] > 0.3  # ten classes: chance is 0.1
