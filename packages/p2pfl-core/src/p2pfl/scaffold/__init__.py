"""``p2pfl plugins new``: generate a ready-to-install third-party plugin project.

The templates live next to this module as package data (``templates/common`` for every
kind, ``templates/<kind>`` for one kind); :func:`generate` validates the name, fills the
templates in and writes the project. See ``docs/plugins.md``.
"""

from p2pfl.scaffold.generator import KINDS, PluginNames, ScaffoldError, core_requirement, generate, plugin_names

__all__ = ["KINDS", "PluginNames", "ScaffoldError", "core_requirement", "generate", "plugin_names"]
