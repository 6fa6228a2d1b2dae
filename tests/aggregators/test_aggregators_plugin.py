"""The plugin registers every aggregator lazily, under its name, with the right flags."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from p2pfl.aggregation import Aggregator
from p2pfl.plugins.manager import PluginManager
from p2pfl_aggregators import plugin

EXPECTED = {
    "median",
    "weighted-median",
    "trimmed-mean",
    "krum",
    "multi-krum",
    "bulyan",
    "geometric-median",
    "centered-clipping",
    "fedavgm",
    "fedadagrad",
    "fedadam",
    "fedyogi",
    "fedprox",
    "scaffold",
}


def test_every_aggregator_is_registered_lazily():
    pm = PluginManager(discover=False)
    pm.register(plugin, name="p2pfl-aggregators")
    registry = pm.registry("aggregators")
    assert EXPECTED | {"fedavg"} == set(registry.names())
    for name in EXPECTED:
        component = registry.get(name)
        assert component.is_lazy and component.metadata["description"]
        cls = component.load()
        assert issubclass(cls, Aggregator) and cls.name == name
        assert cls.supports_partial is (name == "fedprox")


def test_installed_entry_point_and_cheap_discovery():
    """Discovering plugins imports neither numpy nor the aggregator modules."""
    code = (
        "import json, sys\n"
        "from p2pfl.plugins.manager import PluginManager\n"
        "pm = PluginManager()\n"
        "names = pm.registry('aggregators').names()\n"
        "heavy = [m for m in ('numpy', 'p2pfl_aggregators.robust', 'p2pfl_aggregators.adaptive',"
        " 'p2pfl_aggregators.drift') if m in sys.modules]\n"
        "print(json.dumps({'names': names, 'heavy': heavy,"
        " 'status': pm.plugins['p2pfl-aggregators'].status}))\n"
    )
    result = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert result["status"] == "ok"
    assert set(result["names"]) >= EXPECTED
    assert result["heavy"] == []


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_constructible_from_config_keywords(name):
    """Defaults work, and an unknown keyword (a typo in the experiment file) is an error."""
    pm = PluginManager(discover=False)
    pm.register(plugin, name="p2pfl-aggregators")
    cls = pm.load("aggregators", name)
    assert cls().min_updates >= 1
    with pytest.raises(TypeError):
        cls(no_such_parameter=1)
