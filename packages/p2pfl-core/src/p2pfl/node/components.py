"""Turning names from the registries (or ready objects) into a node's components."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from p2pfl.aggregation.aggregator import Aggregator
from p2pfl.communication.transport import Transport, TransportOptions
from p2pfl.compression.codec import Codec
from p2pfl.learning.learner import Learner, NodeData
from p2pfl.plugins import PluginManager


class ComponentError(ValueError):
    """A component could not be built from what the user gave."""


def class_names(obj: Any) -> list[str]:
    """Fully qualified names of the object's class and its bases (no imports needed)."""
    return [f"{c.__module__}.{c.__qualname__}" for c in type(obj).__mro__]


def learner_for_model(plugins: PluginManager, model: Any) -> str:
    """The registered learner whose ``model_types`` metadata matches ``model``'s class."""
    names = set(class_names(model))
    registry = plugins.registry("learners")
    for component in registry:
        if names & set(component.metadata.get("model_types", ())):
            return component.name
    raise ComponentError(
        f"no installed learner accepts a model of type {class_names(model)[0]}; "
        f"name one explicitly (available: {', '.join(registry.names())}) or install its plugin"
    )


def build_learner(
    plugins: PluginManager, learner: Any, model: Any, data: NodeData | None, seed: int, options: dict[str, Any]
) -> Learner:
    if isinstance(learner, Learner):
        return learner
    if data is None:
        raise ComponentError("a node needs data unless it is given a ready learner instance")
    if learner is None:
        learner = learner_for_model(plugins, model)
    cls = plugins.load("learners", learner) if isinstance(learner, str) else learner
    return cls(model, data, seed=seed, **options)


def build_aggregator(plugins: PluginManager, aggregator: Any, options: dict[str, Any]) -> Aggregator:
    if isinstance(aggregator, Aggregator):
        return aggregator
    cls = plugins.load("aggregators", aggregator)
    result: Aggregator = cls(**options)
    return result


def build_codecs(
    plugins: PluginManager, specs: Sequence[Codec | str | Mapping[str, Any]], seed: int = 0
) -> list[Codec]:
    """Codec instances; seeded codecs (random-k, DP noise) get the node's seed unless the spec sets one."""
    codecs = []
    for spec in specs:
        if isinstance(spec, Codec):
            codecs.append(spec)
            continue
        params: dict[str, Any] = {"name": spec} if isinstance(spec, str) else dict(spec)
        name = params.pop("name", None)
        if not isinstance(name, str):
            raise ComponentError(f"codec spec {spec!r} needs a 'name'")
        cls = plugins.load("compressors", name)
        if "seed" in inspect.signature(cls).parameters:
            params.setdefault("seed", seed)
        codecs.append(cls(**params))
    return codecs


def build_transport(
    plugins: PluginManager, protocol: Any, node_id: str, address: str, options: TransportOptions, params: dict[str, Any]
) -> Transport:
    if isinstance(protocol, Transport):
        return protocol
    cls = plugins.load("protocols", protocol)
    transport: Transport = cls(node_id, address, options, **params)
    return transport


class LazyDecoders(Mapping[str, Codec]):
    """Every registered codec, instantiated with default parameters on first use (for decoding)."""

    def __init__(self, plugins: PluginManager, own: Sequence[Codec] = ()) -> None:
        self._plugins = plugins
        self._codecs: dict[str, Codec] = {c.name: c for c in own}  # the node's own codecs decode first

    def __getitem__(self, name: str) -> Codec:
        if name not in self._codecs:
            registry = self._plugins.registry("compressors")
            if name not in registry:
                raise KeyError(name)
            self._codecs[name] = registry.load(name)()
        return self._codecs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._plugins.registry("compressors").names())

    def __len__(self) -> int:
        return len(self._plugins.registry("compressors"))


def lazy_decoders(plugins: PluginManager, own: Sequence[Codec] = ()) -> LazyDecoders:
    return LazyDecoders(plugins, own)
