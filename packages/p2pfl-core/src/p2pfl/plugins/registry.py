"""Registries: one per component kind, mapping a registered name to its component."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


def singular(kind: str) -> str:
    """``"topologies"`` → ``"topology"``, ``"aggregators"`` → ``"aggregator"``."""
    return kind[:-3] + "y" if kind.endswith("ies") else kind.removesuffix("s")


class RegistryError(Exception):
    """Base class of the registry errors."""


class DuplicateComponentError(RegistryError):
    """Two plugins registered the same name for the same kind."""


class UnknownComponentError(RegistryError, KeyError):
    """A name was looked up that no plugin registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ComponentLoadError(RegistryError):
    """A lazy ``"module:attr"`` target could not be imported."""


@dataclass
class Component:
    """One registered component.

    ``target`` is the object itself or a lazy ``"module:attr"`` string; :meth:`load` resolves
    it once and caches the result.
    """

    kind: str
    name: str
    target: Any
    plugin: str
    metadata: dict[str, Any] = field(default_factory=dict)
    _loaded: Any = field(default=None, repr=False)

    @property
    def is_lazy(self) -> bool:
        return isinstance(self.target, str)

    def load(self) -> Any:
        """Return the component, importing a lazy target on first use."""
        if not self.is_lazy:
            return self.target
        if self._loaded is None:
            self._loaded = resolve_target(
                self.target, what=f"{singular(self.kind)} {self.name!r} of plugin {self.plugin!r}"
            )
        return self._loaded


def resolve_target(spec: str, what: str = "target") -> Any:
    """Import ``"package.module:attr.sub"`` and return the attribute."""
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise ComponentLoadError(f"{what}: {spec!r} is not of the form 'module:attr'")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr_path.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ComponentLoadError(f"{what}: cannot load {spec!r}: {exc}") from exc
    return obj


class Registry:
    """Components of one kind, by name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._components: dict[str, Component] = {}

    def add(self, component: Component) -> None:
        """Add a component; a name already taken raises :class:`DuplicateComponentError`."""
        existing = self._components.get(component.name)
        if existing is not None:
            raise DuplicateComponentError(
                f"{singular(self.kind)} {component.name!r} is registered twice: by plugin "
                f"{existing.plugin!r} and by plugin {component.plugin!r}"
            )
        self._components[component.name] = component

    def get(self, name: str) -> Component:
        """The component registered as ``name``; an unknown name lists the available ones."""
        try:
            return self._components[name]
        except KeyError:
            raise UnknownComponentError(self.unknown_message(name)) from None

    def load(self, name: str) -> Any:
        """The loaded component registered as ``name``."""
        return self.get(name).load()

    def unknown_message(self, name: str) -> str:
        available = sorted(self._components)
        message = f"unknown {singular(self.kind)} {name!r}; available: {', '.join(available) or '(none)'}"
        close = difflib.get_close_matches(str(name), available, n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        return message

    def names(self) -> list[str]:
        return sorted(self._components)

    def remove_plugin(self, plugin: str) -> None:
        """Forget every component registered by ``plugin``."""
        self._components = {n: c for n, c in self._components.items() if c.plugin != plugin}

    def __contains__(self, name: object) -> bool:
        return name in self._components

    def __iter__(self) -> Iterator[Component]:
        return iter(self._components[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._components)
