"""Plugin discovery, registries and lookup (see ``docs/plugins.md``)."""

from p2pfl.plugins.manager import (
    BUILTIN_PLUGIN,
    DISABLE_ENV,
    ENTRY_POINT_GROUP,
    LOAD_ENV,
    PluginError,
    PluginInfo,
    PluginManager,
    default_plugin_manager,
)
from p2pfl.plugins.registry import (
    Component,
    ComponentLoadError,
    DuplicateComponentError,
    Registry,
    RegistryError,
    UnknownComponentError,
    resolve_target,
)

__all__ = [
    "BUILTIN_PLUGIN",
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "LOAD_ENV",
    "Component",
    "ComponentLoadError",
    "DuplicateComponentError",
    "PluginError",
    "PluginInfo",
    "PluginManager",
    "Registry",
    "RegistryError",
    "UnknownComponentError",
    "default_plugin_manager",
    "resolve_target",
]
