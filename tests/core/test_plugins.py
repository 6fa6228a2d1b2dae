"""Plugin discovery through real entry points, registries, broken plugins, env filters (issue 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from p2pfl import hookimpl
from p2pfl.plugins import (
    DuplicateComponentError,
    PluginError,
    PluginManager,
    UnknownComponentError,
)


def make_distribution(root: Path, dist: str, module: str, source: str, version: str = "1.2.3") -> None:
    """A throw-away installed distribution: a module plus a ``*.dist-info`` with entry points."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[p2pfl]\n{dist} = {module}\n")
    (info / "RECORD").write_text("")


GOOD_PLUGIN = """
    from p2pfl import hookimpl

    @hookimpl
    def p2pfl_register_aggregators(register):
        register("mean-of-two", "thirdparty_mod:MeanOfTwo", description="demo")

    @hookimpl
    def p2pfl_register_learners(register):
        # lazy targets naming heavy frameworks must not be imported by listing
        register("fake-torch", "torch.nn:Linear")
        register("fake-tf", "tensorflow:Module")
        register("fake-jax", "jax.numpy:array")
"""

BROKEN_PLUGIN = """
    raise ImportError("needs libfoo 9")
"""


@pytest.fixture
def site(tmp_path):
    make_distribution(tmp_path, "p2pfl-thirdparty", "thirdparty_mod", GOOD_PLUGIN)
    make_distribution(tmp_path, "p2pfl-broken", "broken_mod", BROKEN_PLUGIN, version="0.1")
    return tmp_path


def run_cli(args, site, **env):
    environ = {**os.environ, "PYTHONPATH": str(site), **env}
    return subprocess.run(
        [sys.executable, "-m", "p2pfl", *args], capture_output=True, text=True, env=environ, timeout=300
    )


def test_entry_point_plugin_is_discovered_and_listed(site):
    result = run_cli(["plugins", "list", "--json"], site)
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    core = plugins["p2pfl-core"]
    assert core["builtin"] and core["status"] == "ok"
    assert "fedavg" in core["provides"]["aggregators"] and "memory" in core["provides"]["protocols"]
    third = plugins["p2pfl-thirdparty"]
    assert third["version"] == "1.2.3" and third["module"] == "thirdparty_mod" and third["status"] == "ok"
    assert third["provides"]["aggregators"] == ["mean-of-two"]
    assert "p2pfl_register_aggregators" in third["hooks"]
    assert set(third) >= {"name", "version", "module", "hooks", "provides", "status", "error"}


def test_broken_plugin_is_shown_with_its_reason(site):
    result = run_cli(["plugins", "list", "--json"], site)
    assert result.returncode == 0
    broken = {p["name"]: p for p in json.loads(result.stdout)}["p2pfl-broken"]
    assert broken["status"] == "broken"
    assert "needs libfoo 9" in broken["error"]
    table = run_cli(["plugins", "list"], site)
    assert table.returncode == 0 and "BROKEN" in table.stdout and "needs libfoo 9" in table.stdout


def test_kind_filter(site):
    result = run_cli(["plugins", "list", "--json", "--kind", "aggregators"], site)
    names = {p["name"] for p in json.loads(result.stdout)}
    assert "p2pfl-thirdparty" in names and "p2pfl-broken" not in names


def test_listing_imports_no_framework(site):
    code = (
        "import sys; from p2pfl.cli import main\n"
        "try:\n    main(['plugins', 'list', '--json'])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'tensorflow', 'jax', 'flax', 'grpc', 'keras') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(site)},
        timeout=300,
    )
    assert "fake-torch" in result.stdout  # the lazy targets were registered...
    assert "HEAVY=\n" in result.stdout or result.stdout.rstrip().endswith("HEAVY=")  # ...not imported


def test_allow_and_block_lists(site):
    allow_none = json.loads(run_cli(["plugins", "list", "--json"], site, P2PFL_LOAD_PLUGINS="").stdout)
    assert [p["name"] for p in allow_none] == ["p2pfl-core"]
    only = json.loads(run_cli(["plugins", "list", "--json"], site, P2PFL_LOAD_PLUGINS="p2pfl-thirdparty").stdout)
    assert {p["name"] for p in only} == {"p2pfl-core", "p2pfl-thirdparty"}
    blocked = json.loads(run_cli(["plugins", "list", "--json"], site, P2PFL_DISABLE_PLUGINS="p2pfl-broken").stdout)
    assert "p2pfl-broken" not in {p["name"] for p in blocked}


class Dup:
    @hookimpl
    def p2pfl_register_aggregators(self, register):
        register("fedavg", "somewhere:Else")


def test_duplicate_name_names_both_plugins():
    manager = PluginManager(discover=False)
    manager.register(Dup(), name="dup-plugin")
    manager.registries  # noqa: B018 - registration hooks run here
    info = manager.plugins["dup-plugin"]
    assert info.status == "broken"
    assert "p2pfl-core" in info.error and "dup-plugin" in info.error and "'fedavg'" in info.error
    assert manager.registry("aggregators").get("fedavg").plugin == "p2pfl-core"  # the first one stays


def test_unknown_name_lists_available_and_close_match():
    manager = PluginManager(discover=False)
    with pytest.raises(UnknownComponentError) as err:
        manager.registry("aggregators").get("fedavgg")
    assert "fedavg" in str(err.value) and "did you mean 'fedavg'" in str(err.value)


class Misspelled:
    @hookimpl
    def p2pfl_register_aggregator(self, register):  # missing "s"
        pass


def test_misspelled_hook_fails_loudly():
    manager = PluginManager(discover=False)
    with pytest.raises(PluginError, match="p2pfl_register_aggregator"):
        manager.register(Misspelled(), name="typo")


class RaisesWhileRegistering:
    @hookimpl
    def p2pfl_register_topologies(self, register):
        register("half", "x:y")
        raise RuntimeError("boom")


def test_plugin_failing_in_its_hook_is_broken_and_removed():
    manager = PluginManager(discover=False)
    manager.register(RaisesWhileRegistering(), name="flaky")  # registries are built lazily, later
    assert "half" not in manager.registry("topologies")
    assert manager.plugins["flaky"].status == "broken" and "boom" in manager.plugins["flaky"].error
    assert "ring" in manager.registry("topologies")


def test_duplicate_error_type():
    from p2pfl.plugins.registry import Component, Registry

    reg = Registry("aggregators")
    reg.add(Component("aggregators", "x", object(), "a"))
    with pytest.raises(DuplicateComponentError, match="by plugin 'a' and by plugin 'b'"):
        reg.add(Component("aggregators", "x", object(), "b"))


def test_version_lists_plugins(site):
    result = run_cli(["--version"], site)
    assert result.returncode == 0
    assert result.stdout.splitlines()[0].startswith("p2pfl-core ")
    assert "p2pfl-thirdparty 1.2.3" in result.stdout
