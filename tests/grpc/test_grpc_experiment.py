"""Experiments with one OS process per node (``network.processes: true``) on loopback."""

from __future__ import annotations

import asyncio

import pytest

from p2pfl.experiment import ConfigError, prepare_config, run_experiment
from p2pfl.experiment.runner import topology_edges
from p2pfl_grpc.launcher import ProcessCluster

pytestmark = pytest.mark.framework

MNIST_SMALL = [
    "network.nodes=4",
    "network.topology=full",
    "training.rounds=2",
    "training.epochs=1",
    "model.params.hidden=[32]",
    "output.dir=null",  # the example writes to results/mnist otherwise
]


def _mnist(*extra: str) -> list[str]:
    return [*MNIST_SMALL, *extra]


def _config():
    from p2pfl.examples import mnist

    return mnist()


def test_four_processes_complete_two_rounds_and_agree_with_the_simulation() -> None:
    grpc = ["network.protocol=grpc", "network.protocol_options={insecure: true}", "network.processes=true"]
    summary = run_experiment(_config(), _mnist(*grpc))
    assert summary["nodes"] == 4 and summary["rounds_completed"] == 2
    assert [p["status"] for p in summary["per_node"]] == ["finished"] * 4
    assert summary["models_agree"]
    assert summary["bytes_sent"] > 0
    # the same experiment simulated in one process (memory transport) reaches the very same model
    simulated = run_experiment(_config(), _mnist())
    assert {p["model_digest"] for p in summary["per_node"]} == {p["model_digest"] for p in simulated["per_node"]}
    assert summary["final_accuracy"] == pytest.approx(simulated["final_accuracy"])


def test_processes_need_explicit_security() -> None:
    with pytest.raises(ConfigError, match="insecure: true"):
        run_experiment(_config(), _mnist("network.protocol=grpc", "network.processes=true"))


def test_kill_9_of_a_node_process_mid_round_the_others_finish() -> None:
    overrides = _mnist(
        "training.rounds=3",
        "network.protocol=grpc",
        "network.protocol_options={insecure: true}",
        "network.processes=true",
    )
    cfg, plugins = prepare_config(_config(), overrides)

    async def scenario():
        async with ProcessCluster(cfg, plugins) as cluster:
            await cluster.start()
            await cluster.connect(topology_edges(cfg, plugins))
            await cluster.start_learning()
            victim = cluster.nodes[3]
            await victim.expect("trained", 120)  # it trained in round 1: the others wait for its update
            victim.kill()
            return await cluster.reports(600)

    reports = asyncio.run(scenario())
    assert reports[3] is None  # the killed process
    survivors = [r["summary"] for r in reports[:3] if r is not None]
    assert len(survivors) == 3
    assert [s["status"] for s in survivors] == ["finished"] * 3
    assert [s["rounds_completed"] for s in survivors] == [3, 3, 3]
    assert len({s["model_digest"] for s in survivors}) == 1
