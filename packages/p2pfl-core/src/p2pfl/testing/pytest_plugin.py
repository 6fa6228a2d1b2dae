"""The ``p2pfl.testing`` pytest plugin: fixtures for plugin authors.

Installed with ``p2pfl-core`` through the ``pytest11`` entry point, so every pytest run in
an environment with p2pfl sees these fixtures without any ``conftest.py``:

* ``p2pfl_plugin_manager`` — an isolated :class:`~p2pfl.plugins.manager.PluginManager`
  holding core's built-ins only (no entry-point discovery);
* ``p2pfl_register_plugin`` — register a plugin object or module for the current test only;
* ``make_node_data`` — a factory of small synthetic, learnable :class:`~p2pfl.learning.NodeData`.

This module is imported by *every* pytest session of the environment, so it imports
nothing heavy at module level (numpy, datasets and p2pfl's submodules are imported inside
the fixtures).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from p2pfl.learning.learner import NodeData
    from p2pfl.plugins.manager import PluginInfo, PluginManager


@pytest.fixture
def p2pfl_plugin_manager() -> PluginManager:
    """A fresh plugin manager with core's built-ins only: nothing installed leaks in."""
    from p2pfl.plugins.manager import PluginManager

    return PluginManager(discover=False)


@pytest.fixture
def p2pfl_register_plugin(
    p2pfl_plugin_manager: PluginManager, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., PluginInfo]:
    """``register(plugin, name=None) -> PluginInfo``: make a plugin visible for this test only.

    The plugin is registered into the test's ``p2pfl_plugin_manager``, and that manager
    stands in for the process-wide :func:`~p2pfl.plugins.manager.default_plugin_manager`
    until the test ends, so code that looks components up by name (experiments, nodes)
    finds it too. An invalid plugin raises :class:`~p2pfl.plugins.manager.PluginError`.
    """
    from p2pfl.plugins import manager as manager_module

    monkeypatch.setattr(manager_module, "_default", p2pfl_plugin_manager)

    def register(plugin: Any, name: str | None = None) -> PluginInfo:
        return p2pfl_plugin_manager.register(plugin, name=name)

    return register


@pytest.fixture(scope="session")
def make_node_data() -> Callable[..., NodeData]:
    """A factory of synthetic :class:`~p2pfl.learning.NodeData`; see :func:`p2pfl.testing.data.synthetic_node_data`."""
    from p2pfl.testing.data import synthetic_node_data

    return synthetic_node_data
