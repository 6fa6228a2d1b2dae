"""The plugin registers every codec lazily, by the names experiment files use."""

from __future__ import annotations

import subprocess
import sys

import pytest

import p2pfl_compression.plugin as plugin
from p2pfl.compression import Codec
from p2pfl.plugins.manager import PluginManager

NAMES = ["dp", "lowrank", "lzma", "quantize", "randomk", "sign", "topk", "zlib"]


@pytest.fixture
def registry():
    manager = PluginManager(discover=False)
    manager.register(plugin, name="p2pfl-compression")
    return manager.registry("compressors")


def test_every_codec_is_registered_under_its_own_name(registry):
    assert [n for n in registry.names() if n in NAMES] == NAMES
    for name in NAMES:
        component = registry.get(name)
        assert component.is_lazy and component.metadata["description"]
        cls = component.load()
        assert issubclass(cls, Codec) and cls.name == name
        assert isinstance(cls(), Codec)  # receivers build decoders with default parameters


def test_experiment_specs_build_codecs(registry):
    specs = [
        {"name": "topk", "k": 0.01},
        {"name": "quantize", "bits": 8},
        {"name": "zlib", "level": 6},
        {"name": "dp", "clip": 1.0, "noise_multiplier": 1.1, "delta": "1e-5"},
    ]
    codecs = [registry.load(s["name"])(**{k: v for k, v in s.items() if k != "name"}) for s in specs]
    assert [c.name for c in codecs] == ["topk", "quantize", "zlib", "dp"]


def test_listing_the_plugin_imports_no_codec():
    code = (
        "import sys, p2pfl_compression.plugin\n"
        "print(sorted(m for m in sys.modules if m.startswith('p2pfl_compression.')), 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['p2pfl_compression.__about__', 'p2pfl_compression.plugin'] False"


def test_installed_entry_point():
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group="p2pfl") if ep.name == "p2pfl-compression"]
    assert [ep.value for ep in found] == ["p2pfl_compression.plugin"]
