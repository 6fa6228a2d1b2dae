"""Plugin discovery and the registries built from it.

A :class:`PluginManager` wraps a pluggy manager. It registers core's built-ins, then every
module named by an entry point of the ``p2pfl`` group (filtered by ``P2PFL_LOAD_PLUGINS`` /
``P2PFL_DISABLE_PLUGINS``). A plugin that fails to import, has a misspelled hook, or raises
while registering is recorded as *broken* with the reason; nothing else is affected.

There is no global mutable manager: :func:`default_plugin_manager` caches one discovery per
process for convenience, and tests or embedders create their own instances.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy

from p2pfl import hookspecs
from p2pfl.plugins.registry import Component, Registry, RegistryError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "p2pfl"
BUILTIN_PLUGIN = "p2pfl-core"
LOAD_ENV = "P2PFL_LOAD_PLUGINS"
DISABLE_ENV = "P2PFL_DISABLE_PLUGINS"


@dataclass
class PluginInfo:
    """What ``p2pfl plugins list`` shows about one plugin."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    status: str = "ok"  # "ok" or "broken"
    error: str | None = None
    hooks: list[str] = field(default_factory=list)
    provides: dict[str, list[str]] = field(default_factory=dict)

    def mark_broken(self, reason: str) -> None:
        self.status = "broken"
        self.error = reason

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "builtin": self.builtin,
            "status": self.status,
            "error": self.error,
            "hooks": sorted(self.hooks),
            "provides": {k: sorted(v) for k, v in sorted(self.provides.items()) if v},
        }


def _env_list(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {item.strip() for item in value.split(",") if item.strip()}


class PluginManager:
    """Discovered plugins plus one :class:`~p2pfl.plugins.registry.Registry` per kind.

    Args:
        discover: load plugins from installed entry points (off for isolated tests).
        environ: where ``P2PFL_LOAD_PLUGINS`` / ``P2PFL_DISABLE_PLUGINS`` are read
            (``os.environ`` by default).
        plugin_dirs: folders whose ``*.py`` modules are loaded as local plugins.
    """

    def __init__(
        self,
        discover: bool = True,
        environ: Mapping[str, str] | None = None,
        plugin_dirs: Iterable[str | os.PathLike[str]] = (),
    ) -> None:
        self.hooks = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.hooks.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._registries: dict[str, Registry] | None = None
        env = os.environ if environ is None else environ
        self._allow = _env_list(env.get(LOAD_ENV))
        self._block = _env_list(env.get(DISABLE_ENV)) or set()
        self._add_builtins()
        if discover:
            self._discover_entry_points()
        for folder in plugin_dirs:
            self.load_plugin_dir(folder)

    # ------------------------------------------------------------------ loading

    def _add_builtins(self) -> None:
        from p2pfl import __version__, builtins

        info = PluginInfo(
            name=BUILTIN_PLUGIN,
            module=builtins.__name__,
            distribution=BUILTIN_PLUGIN,
            version=__version__,
            builtin=True,
        )
        self._register(builtins, info)

    def _allowed(self, name: str) -> bool:
        if name in self._block:
            return False
        return self._allow is None or name in self._allow

    def _discover_entry_points(self) -> None:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            if dist_name == BUILTIN_PLUGIN or ep.name in self.plugins:
                continue
            if not (self._allowed(ep.name) or (dist_name and self._allowed(dist_name))):
                continue
            info = PluginInfo(
                name=ep.name,
                module=ep.value,
                distribution=dist_name,
                version=dist.version if dist is not None else None,
            )
            self._load(info, ep.load)

    def load_plugin_dir(self, folder: str | os.PathLike[str]) -> None:
        """Load every ``*.py`` module of ``folder`` as a local (unpackaged) plugin."""
        path = Path(folder).resolve()
        if not path.is_dir():
            raise FileNotFoundError(f"plugin folder {str(folder)!r} does not exist")
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
        for file in sorted(path.glob("*.py")):
            if file.stem.startswith("_"):
                continue
            info = PluginInfo(name=file.stem, module=str(file), distribution=None, version=None)
            self._load(info, partial(importlib.import_module, file.stem))

    def _load(self, info: PluginInfo, loader: Callable[[], Any]) -> None:
        try:
            plugin = loader()
        except Exception as exc:  # a broken plugin must never break the CLI
            info.mark_broken(f"import failed: {type(exc).__name__}: {exc}")
            self.plugins[info.name] = info
            log.warning("plugin %s is broken: %s", info.name, info.error)
            return
        self._register(plugin, info)

    def register(self, plugin: Any, name: str | None = None) -> PluginInfo:
        """Register a plugin object or module directly (tests, notebooks, embedding).

        Raises :class:`PluginError` if it is invalid, instead of recording it as broken.
        """
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        info = PluginInfo(name=name, module=getattr(plugin, "__name__", type(plugin).__qualname__))
        self._register(plugin, info)
        if info.status != "ok":
            del self.plugins[info.name]
            raise PluginError(f"plugin {name!r}: {info.error}")
        return info

    def _register(self, plugin: Any, info: PluginInfo) -> None:
        self.plugins[info.name] = info
        unknown = [
            attr
            for attr in dir(plugin)
            if attr.startswith("p2pfl_")
            and callable(getattr(plugin, attr, None))
            and self.hooks.parse_hookimpl_opts(plugin, attr) is not None
            and not hasattr(self.hooks.hook, attr)
        ]
        if unknown:  # pluggy's check_pending, scoped to this plugin
            info.mark_broken(f"unknown hook(s) {', '.join(unknown)}; see p2pfl.hookspecs")
            return
        try:
            self.hooks.register(plugin, name=info.name)
        except Exception as exc:  # e.g. a hookimpl whose arguments do not match its spec
            info.mark_broken(f"invalid hooks: {exc}")
            return
        info.hooks = sorted(impl.name for impl in self.hooks.get_hookcallers(plugin) or [])
        if self._registries is not None:
            self._collect(plugin_names={info.name})

    # ------------------------------------------------------------------ registries

    @property
    def registries(self) -> dict[str, Registry]:
        """One registry per kind, built on first use by calling the registration hooks."""
        if self._registries is None:
            self._registries = {kind: Registry(kind) for kind in hookspecs.KINDS}
            self._collect()
        return self._registries

    def registry(self, kind: str) -> Registry:
        """The registry of ``kind`` (``"learners"``, ``"aggregators"``...)."""
        try:
            return self.registries[kind]
        except KeyError:
            raise RegistryError(f"unknown component kind {kind!r}; kinds: {', '.join(hookspecs.KINDS)}") from None

    def load(self, kind: str, name: str) -> Any:
        """Shortcut for ``registry(kind).load(name)``."""
        return self.registry(kind).load(name)

    def _collect(self, plugin_names: set[str] | None = None) -> None:
        """Call each plugin's registration hooks one implementation at a time (for attribution)."""
        assert self._registries is not None
        for kind, hook_name in hookspecs.REGISTRATION_HOOKS.items():
            for impl in getattr(self.hooks.hook, hook_name).get_hookimpls():
                if plugin_names is not None and impl.plugin_name not in plugin_names:
                    continue
                info = self.plugins[impl.plugin_name]
                if info.status != "ok":
                    continue
                try:
                    impl.function(register=self._registrar(kind, info))
                except Exception as exc:
                    self._break(info, f"{hook_name} failed: {type(exc).__name__}: {exc}")

    def _registrar(self, kind: str, info: PluginInfo) -> Callable[..., None]:
        def register(name: str, target: Any, **meta: Any) -> None:
            if not isinstance(name, str) or not name:
                raise RegistryError(f"{kind} names must be non-empty strings, got {name!r}")
            assert self._registries is not None
            self._registries[kind].add(Component(kind, name, target, info.name, meta))
            info.provides.setdefault(kind, []).append(name)

        return register

    def _break(self, info: PluginInfo, reason: str) -> None:
        info.mark_broken(reason)
        info.provides = {}
        for registry in (self._registries or {}).values():
            registry.remove_plugin(info.name)
        log.warning("plugin %s is broken: %s", info.name, reason)

    # ------------------------------------------------------------------ lifecycle

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook; an observer's exception is logged, never raised."""
        hook = getattr(self.hooks.hook, hook_name)
        for impl in hook.get_hookimpls():
            try:
                impl.function(**{k: kwargs[k] for k in impl.argnames})
            except Exception:
                log.exception("observer %s of plugin %s failed", hook_name, impl.plugin_name)


class PluginError(Exception):
    """A plugin registered directly is invalid."""


_default: PluginManager | None = None


def default_plugin_manager() -> PluginManager:
    """The process's discovered plugins, built on first use (read-mostly, not a settings store)."""
    global _default
    if _default is None:
        _default = PluginManager()
    return _default
