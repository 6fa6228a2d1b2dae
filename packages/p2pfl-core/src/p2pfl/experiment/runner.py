"""Running a whole experiment: data, topology, nodes, learning, results.

``run_experiment(config)`` builds every node of the config in this process (one event loop,
a small worker pool), wires the topology, starts learning from the first node, waits on the
nodes' completion events and returns the summary. Protocols that can host each node in its
own OS process (``network.processes: true``) provide a ``launch_experiment`` classmethod.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from p2pfl.data.node_data import build_node_data
from p2pfl.experiment.attacks import ByzantineLearner, attack_options
from p2pfl.experiment.config import ConfigError, apply_overrides, component_spec, load_config, validate
from p2pfl.experiment.results import write_results
from p2pfl.experiment.summary import summarize
from p2pfl.learning.learner import NodeData
from p2pfl.node.components import build_learner
from p2pfl.node.node import Node
from p2pfl.node.runtime import Runtime, default_workers
from p2pfl.node.settings import NodeSettings
from p2pfl.plugins import PluginManager, default_plugin_manager, resolve_target

log = logging.getLogger(__name__)


def prepare_config(
    config: str | Path | Mapping[str, Any], overrides: Sequence[str] = (), plugins: PluginManager | None = None
) -> tuple[dict[str, Any], PluginManager]:
    """Load, override and validate a config; also returns the plugin manager that resolves it."""
    raw = apply_overrides(load_config(config), overrides)
    dirs = (raw.get("plugins") or {}).get("dirs") or [] if isinstance(raw.get("plugins"), dict) else []
    if plugins is None:
        try:
            plugins = PluginManager(plugin_dirs=dirs) if dirs else default_plugin_manager()
        except FileNotFoundError as exc:
            raise ConfigError([f"plugins.dirs: {exc}"]) from None
    return validate(raw, plugins), plugins


def run_experiment(
    config: str | Path | Mapping[str, Any],
    overrides: Sequence[str] = (),
    *,
    plugins: PluginManager | None = None,
    observers: Sequence[object] = (),
) -> dict[str, Any]:
    """Run an experiment and return its summary (see :func:`p2pfl.experiment.summary.summarize`).

    Args:
        config: a YAML path or a config mapping.
        overrides: ``key.path=value`` strings, as ``p2pfl run --set``.
        plugins: the plugin manager (the process default, or one with ``plugins.dirs`` loaded).
        observers: extra plugin objects with lifecycle hookimpls, registered for this run only
            (e.g. the CLI's progress display).
    """
    cfg, plugins = prepare_config(config, overrides, plugins)
    protocol_cls = plugins.load("protocols", cfg["network"]["protocol"])
    if cfg["network"]["processes"]:
        launcher = getattr(protocol_cls, "launch_experiment", None)
        if launcher is None:
            raise ConfigError(
                [f"network.processes: protocol {cfg['network']['protocol']!r} cannot run nodes as processes"]
            )
        summary: dict[str, Any] = launcher(cfg, plugins)
        return summary
    registered = [plugins.register(obs, name=f"observer-{id(obs)}") for obs in observers]
    try:
        with Simulation(cfg, plugins) as sim:
            return sim.run()
    finally:
        for info in registered:
            plugins.hooks.unregister(name=info.name)
            plugins.plugins.pop(info.name, None)


def named_spec(value: Any) -> tuple[str, dict[str, Any]]:
    """``(name, params)`` of a component in a validated config (where a name is guaranteed)."""
    name, params = component_spec(value)
    if name is None:
        raise ConfigError([f"{value!r}: a component needs a name"])
    return name, params


def call_builder(build: str, params: Mapping[str, Any], data: NodeData, seed: int) -> Any:
    """Call the ``model.build`` callable, passing ``input_shape``/``num_classes``/``seed`` if it takes them."""
    try:
        builder: Callable[..., Any] = resolve_target(build, what="model.build")
    except Exception as exc:
        raise ConfigError([f"model.build: {exc}"]) from None
    accepted = inspect.signature(builder).parameters
    extra = {"input_shape": data.input_shape, "num_classes": data.num_classes, "seed": seed}
    kwargs = {k: v for k, v in extra.items() if k in accepted and k not in params}
    try:
        return builder(**params, **kwargs)
    except TypeError as exc:
        raise ConfigError([f"model.params: {build} rejected them: {exc}"]) from None


def node_data_for(cfg: Mapping[str, Any], plugins: PluginManager) -> list[NodeData]:
    """Load the dataset and split it between the nodes."""
    data, seed, n = cfg["data"], cfg["seed"], cfg["network"]["nodes"]
    ds_name, ds_params = named_spec(data["dataset"])
    part_name, part_params = named_spec(data["partitioning"])
    loader = plugins.load("datasets", ds_name)
    if "seed" in inspect.signature(loader).parameters:
        ds_params.setdefault("seed", seed)  # seeds the train/test split of sources without one
    try:
        spec = loader(**ds_params)
    except (TypeError, ValueError, FileNotFoundError) as exc:
        raise ConfigError([f"data.dataset: {exc}"]) from None
    partitioner = plugins.load("partitioners", part_name)
    try:
        return build_node_data(spec, partitioner, n, seed=seed, batch_size=data["batch_size"], **part_params)
    except (TypeError, ValueError) as exc:
        raise ConfigError([f"data.partitioning: {exc}"]) from None


def topology_edges(cfg: Mapping[str, Any], plugins: PluginManager) -> list[tuple[int, int]]:
    name, params = named_spec(cfg["network"]["topology"])
    try:
        return list(plugins.load("topologies", name)(cfg["network"]["nodes"], cfg["seed"], **params))
    except (TypeError, ValueError) as exc:
        raise ConfigError([f"network.topology: {exc}"]) from None


def node_settings(cfg: Mapping[str, Any]) -> NodeSettings:
    settings = NodeSettings().with_overrides(**cfg["settings"])
    if "gossip_ttl" not in cfg["settings"]:  # the hop limit must cover the network's diameter
        settings = settings.with_overrides(gossip_ttl=max(settings.gossip_ttl, cfg["network"]["nodes"]))
    return settings


class Simulation:
    """All nodes of one experiment in this process, sharing one runtime."""

    def __init__(self, cfg: Mapping[str, Any], plugins: PluginManager) -> None:
        self.cfg, self.plugins = cfg, plugins
        self.nodes: list[Node] = []
        self.runtime = Runtime(workers=min(default_workers(), cfg["network"]["nodes"]), name="p2pfl-sim")
        self.started = time.perf_counter()
        self.interrupted = False

    def __enter__(self) -> Simulation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def build(self) -> None:
        import datasets

        datasets.disable_progress_bars()  # they would garble the live progress display
        cfg = self.cfg
        datas = node_data_for(cfg, self.plugins)
        settings = node_settings(cfg)
        protocol, options = cfg["network"]["protocol"], dict(cfg["network"]["protocol_options"])
        if protocol == "memory":
            from p2pfl.communication.memory import MemoryNetwork

            options.setdefault("network", MemoryNetwork())
        agg_name, agg_params = named_spec(cfg["aggregator"])
        width = len(str(len(datas) - 1))
        for i, data in enumerate(datas):
            seed = cfg["seed"] * 1000 + i
            model = call_builder(cfg["model"]["build"], cfg["model"]["params"], data, seed)
            try:
                node = Node(
                    model,
                    data,
                    learner=self._learner(i, model, data, seed),
                    aggregator=agg_name,
                    aggregator_options=agg_params | self._aggregator_context(agg_name),
                    protocol=protocol,
                    protocol_options=options,
                    node_id=f"node-{i:0{width}d}",
                    codecs=cfg["compression"],
                    workflow=cfg["training"]["workflow"],
                    settings=settings,
                    seed=seed,
                    learner_options=cfg["model"]["options"],
                    plugins=self.plugins,
                    runtime=self.runtime,
                )
            except (TypeError, ValueError) as exc:
                raise ConfigError([f"node {i}: {exc}"]) from None
            self.nodes.append(node)

    def _learner(self, index: int, model: Any, data: NodeData, seed: int) -> Any:
        """The learner name, or for a Byzantine node its learner wrapped by the attack."""
        attack = attack_options(self.cfg["attack"], index)
        if attack is None:
            return self.cfg["model"]["learner"]
        options = self.cfg["model"]["options"]
        inner = build_learner(self.plugins, self.cfg["model"]["learner"], model, data, seed, options)
        return ByzantineLearner(inner, seed=seed, **attack)

    def _aggregator_context(self, name: str | None) -> dict[str, Any]:
        """Aggregators that need the network size declare it with ``needs_num_nodes`` metadata."""
        component = self.plugins.registry("aggregators").get(name or "")
        return {"num_nodes": self.cfg["network"]["nodes"]} if component.metadata.get("needs_num_nodes") else {}

    def connect(self) -> None:
        for node in self.nodes:
            node.start()
        for i, j in topology_edges(self.cfg, self.plugins):
            self.nodes[i].connect(self.nodes[j].address)
        first, n = self.nodes[0], len(self.nodes)
        if not self.runtime.run(first.await_members(n, first.settings.start_timeout)):
            raise RuntimeError(
                f"only {len(first.members)} of {n} nodes became known to {first.id}; is the topology connected?"
            )

    def run(self) -> dict[str, Any]:
        self.build()
        self.connect()
        training = self.cfg["training"]
        self.started = time.perf_counter()
        self.nodes[0].start_learning(
            training["rounds"], training["epochs"], training["trainset_size"], self.cfg["seed"]
        )
        deadline = time.monotonic() + training["timeout"]
        try:
            for node in self.nodes:
                if not node.wait_finished(max(0.0, deadline - time.monotonic())):
                    log.error("%s did not finish before training.timeout", node.id)
        except KeyboardInterrupt:
            self.interrupted = True
            self.nodes[0].stop_learning()
        return self.summary()

    def summary(self) -> dict[str, Any]:
        params = [node.get_parameters() for node in self.nodes]
        summary = summarize(self.cfg, self.nodes, params, time.perf_counter() - self.started, self.interrupted)
        out = self.cfg["output"]
        if out["dir"]:
            summary["output_dir"] = str(write_results(out["dir"], self.cfg, summary, plots=out["plots"]))
        self.plugins.notify("p2pfl_experiment_finished", summary=summary, output_dir=out["dir"])
        return summary

    def close(self) -> None:
        for node in self.nodes:
            try:
                node.stop()
            except Exception:
                log.exception("stopping %s failed", node.id)
        self.runtime.close()
