"""Experiment config validation and `p2pfl run` errors (issue 4)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from p2pfl.experiment import ConfigError, prepare_config
from p2pfl.experiment.config import apply_overrides
from p2pfl.plugins import PluginManager


@pytest.fixture
def plugins():
    return PluginManager(discover=False)


def problems(config, plugins, overrides=()):
    with pytest.raises(ConfigError) as err:
        prepare_config(config, overrides, plugins)
    return err.value.problems


def test_misspelled_key_names_its_path_and_suggests(plugins):
    found = problems({"training": {"roundz": 3}}, plugins)
    assert len(found) == 1
    assert found[0].startswith("training.roundz: unknown key (did you mean 'rounds'?)")
    assert "accepted: rounds, epochs" in found[0]


def test_wrong_type_names_its_path(plugins):
    found = problems({"training": {"rounds": "ten"}}, plugins)
    assert found == ["training.rounds: must be an integer >= 1, got 'ten'"]


def test_unknown_aggregator_lists_available(plugins):
    found = problems({"aggregator": {"name": "fedavgg"}}, plugins)
    assert found[0].startswith("aggregator: unknown aggregator 'fedavgg'; available: fedavg")


def test_every_problem_is_reported_at_once(plugins):
    found = problems(
        {"network": {"nodes": 0, "topology": "rign"}, "compression": [{"name": "nope"}], "bogus": 1}, plugins
    )
    paths = sorted(p.split(":")[0] for p in found)
    assert paths == ["bogus", "compression[0]", "network.nodes", "network.topology"]


def test_settings_keys_are_checked(plugins):
    found = problems({"settings": {"aggregation_timeot": 5}}, plugins)
    assert "settings.aggregation_timeot: unknown key (did you mean 'aggregation_timeout'?)" in found[0]


def test_overrides_are_yaml():
    cfg = apply_overrides({"a": {"b": 1}}, ["a.b=2", "a.c=[1, 2]", "d.e={x: 1}", "f=true"])
    assert cfg == {"a": {"b": 2, "c": [1, 2]}, "d": {"e": {"x": 1}}, "f": True}


def test_override_syntax_error():
    with pytest.raises(ConfigError, match=r"expected key\.path=value"):
        apply_overrides({}, ["nokey"])


def test_valid_config_resolves_defaults(plugins):
    cfg, _ = prepare_config({"network": {"nodes": 3}}, ["training.rounds=2"], plugins)
    assert cfg["network"] == {
        "nodes": 3,
        "topology": "full",
        "protocol": "memory",
        "protocol_options": {},
        "processes": False,
    }
    assert cfg["training"]["rounds"] == 2 and cfg["aggregator"] == {"name": "fedavg"}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "mnist", "--set", "training.rounds=0"], "training.rounds: must be an integer >= 1"),
        (["run", "mnist", "--set", "aggregator.name=krumm"], "aggregator: unknown aggregator 'krumm'"),
        (["run", "no-such-example"], "not a config file, nor an example"),
        (
            ["run", "mnist", "--set", "data.partitioning.alpah=1", "--set", "data.partitioning.name=dirichlet"],
            "data.partitioning",
        ),
    ],
)
def test_cli_config_errors_exit_2_without_traceback(args, needle):
    result = subprocess.run([sys.executable, "-m", "p2pfl", *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
