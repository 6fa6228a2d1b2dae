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
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from p2pfl.data.node_data import build_node_data
from p2pfl.experiment.attacks import ByzantineLearner, attack_options
from p2pfl.experiment.config import ConfigError, apply_overrides, component_spec, load_config, validate
from p2pfl.experiment.results import write_results
from p2pfl.experiment.summary import summarize
from p2pfl.learning.learner import NodeData
from p2pfl.node.components import build_aggregator, build_codecs, build_learner
from p2pfl.node.node import Node
from p2pfl.node.runtime import Runtime, default_workers
from p2pfl.node.settings import NodeSettings
from p2pfl.plugins import PluginManager, default_plugin_manager, resolve_target
from p2pfl.topology import components

log = logging.getLogger(__name__)
T = TypeVar("T")


def prepare_config(
    config: str | Path | Mapping[str, Any], overrides: Sequence[str] = (), plugins: PluginManager | None = None
) -> tuple[dict[str, Any], PluginManager]:
    """Load, override and validate a config; also returns the plugin manager that resolves it."""
    raw = apply_overrides(load_config(config), overrides)
    dirs = raw["plugins"].get("dirs") or [] if isinstance(raw.get("plugins"), dict) else []
    if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
        raise ConfigError([f"plugins.dirs: must be a list of folder paths, got {dirs!r}"])
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
    launcher = None
    if cfg["network"]["processes"]:
        launcher = getattr(plugins.load("protocols", cfg["network"]["protocol"]), "launch_experiment", None)
        if launcher is None:
            protocol = cfg["network"]["protocol"]
            raise ConfigError([f"network.processes: protocol {protocol!r} cannot run nodes as processes"])
    if cfg["output"]["dir"]:
        try:  # fail now, not after training
            Path(cfg["output"]["dir"]).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError([f"output.dir: cannot create {cfg['output']['dir']!r}: {exc.strerror or exc}"]) from None
    registered = [plugins.register(obs, name=f"observer-{id(obs)}") for obs in observers]
    try:
        if launcher is not None:
            summary: dict[str, Any] = launcher(cfg, plugins)
            return summary
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
        builder: Callable[..., Any] = resolve_target(build, what="the builder")
    except Exception as exc:
        raise ConfigError([f"model.build: {exc}"]) from None
    accepted = inspect.signature(builder).parameters
    extra = {"input_shape": data.input_shape, "num_classes": data.num_classes, "seed": seed}
    kwargs = {k: v for k, v in extra.items() if k in accepted and k not in params}
    try:
        return builder(**params, **kwargs)
    except (TypeError, ValueError) as exc:
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
    except Exception as exc:  # a dataset that cannot be loaded is a config problem (path, format, network)
        raise ConfigError([f"data.dataset: {type(exc).__name__}: {exc}"]) from None
    partitioner = plugins.load("partitioners", part_name)
    try:
        return build_node_data(spec, partitioner, n, seed=seed, batch_size=data["batch_size"], **part_params)
    except (TypeError, ValueError) as exc:
        raise ConfigError([f"data.partitioning: {exc}"]) from None


def topology_edges(cfg: Mapping[str, Any], plugins: PluginManager) -> list[tuple[int, int]]:
    """The topology's edges; a graph that leaves some nodes unreachable is a config error."""
    name, params = named_spec(cfg["network"]["topology"])
    n = cfg["network"]["nodes"]
    try:
        edges = list(plugins.load("topologies", name)(n, cfg["seed"], **params))
    except (TypeError, ValueError) as exc:
        raise ConfigError([f"network.topology: {exc}"]) from None
    parts = components(n, edges)
    if len(parts) > 1:
        raise ConfigError(
            [
                f"network.topology: the graph is not connected ({len(parts)} separate parts: "
                f"{[p[:5] for p in parts]}), so the nodes cannot learn together"
            ]
        )
    return edges


def node_settings(cfg: Mapping[str, Any]) -> NodeSettings:
    settings = NodeSettings().with_overrides(**cfg["settings"])
    if "gossip_ttl" not in cfg["settings"]:  # the hop limit must cover the network's diameter
        settings = settings.with_overrides(gossip_ttl=max(settings.gossip_ttl, cfg["network"]["nodes"]))
    return settings


def finish_experiment(cfg: Mapping[str, Any], plugins: PluginManager, summary: dict[str, Any]) -> dict[str, Any]:
    """Write the output directory (if any) and tell observers the experiment finished."""
    out = cfg["output"]
    if out["dir"]:
        summary["output_dir"] = str(write_results(out["dir"], cfg, summary, plots=out["plots"]))
    plugins.notify("p2pfl_experiment_finished", summary=summary, output_dir=out["dir"] or None)
    return summary


def node_id_for(cfg: Mapping[str, Any], index: int) -> str:
    """The id of node ``index`` of an experiment (zero-padded to the width of the largest index)."""
    width = len(str(cfg["network"]["nodes"] - 1))
    return f"node-{index:0{width}d}"


def build_node(
    cfg: Mapping[str, Any],
    plugins: PluginManager,
    index: int,
    data: NodeData,
    *,
    node_id: str | None = None,
    address: str = "",
    protocol_options: Mapping[str, Any] | None = None,
    runtime: Runtime | None = None,
) -> Node:
    """Node ``index`` of a validated config: its model, learner (Byzantine if attacked), components.

    Every way of running an experiment (one process, one process per node, daemons) builds its
    nodes here, so they are identical whatever the deployment.
    """
    seed = cfg["seed"] * 1000 + index
    model = call_builder(cfg["model"]["build"], cfg["model"]["params"], data, seed)
    learner = built("model.options", lambda: learner_for(cfg, plugins, index, model, data, seed))
    agg_name, agg_params = named_spec(cfg["aggregator"])
    if plugins.registry("aggregators").get(agg_name).metadata.get("needs_num_nodes"):
        agg_params = {**agg_params, "num_nodes": cfg["network"]["nodes"]}
    aggregator = built("aggregator", lambda: build_aggregator(plugins, agg_name, agg_params))
    trainers = cfg["training"]["trainset_size"] or cfg["network"]["nodes"]
    if aggregator.min_updates > trainers:
        raise ConfigError(
            [
                f"aggregator: {agg_name} needs at least {aggregator.min_updates} updates per round, "
                f"but {trainers} nodes train (training.trainset_size / network.nodes)"
            ]
        )
    codecs = [built(f"compression[{i}]", partial(build_codecs, plugins, [spec], seed))[0]
              for i, spec in enumerate(cfg["compression"])]  # fmt: skip
    options = cfg["network"]["protocol_options"] if protocol_options is None else protocol_options
    return built("network", lambda: Node(
        model, data, learner=learner, aggregator=aggregator, protocol=cfg["network"]["protocol"], address=address,
        protocol_options=dict(options), node_id=node_id or node_id_for(cfg, index), codecs=codecs,
        workflow=cfg["training"]["workflow"], settings=node_settings(cfg), seed=seed, plugins=plugins, runtime=runtime,
    ))  # fmt: skip


def built(path: str, make: Callable[[], T]) -> T:
    """``make()``, with a component's rejection of its parameters reported under the config key ``path``."""
    try:
        return make()
    except (TypeError, ValueError) as exc:
        raise ConfigError([f"{path}: {exc}"]) from None


def learner_for(
    cfg: Mapping[str, Any], plugins: PluginManager, index: int, model: Any, data: NodeData, seed: int
) -> Any:
    """The node's learner; a Byzantine node's (``attack``) is wrapped by the attack."""
    learner = build_learner(plugins, cfg["model"]["learner"], model, data, seed, cfg["model"]["options"])
    attack = attack_options(cfg["attack"], index)
    return learner if attack is None else ByzantineLearner(learner, seed=seed, **attack)


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
        options = dict(self.cfg["network"]["protocol_options"])
        from p2pfl.communication.memory import MemoryNetwork, MemoryTransport

        if issubclass(self.plugins.load("protocols", self.cfg["network"]["protocol"]), MemoryTransport):
            options.setdefault("network", MemoryNetwork())  # one simulated network for all nodes
        datas = node_data_for(self.cfg, self.plugins)
        self.nodes = [
            build_node(self.cfg, self.plugins, i, data, protocol_options=options, runtime=self.runtime)
            for i, data in enumerate(datas)
        ]

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
        return finish_experiment(self.cfg, self.plugins, summary)

    def close(self) -> None:
        for node in self.nodes:
            try:
                node.stop()
            except Exception:
                log.exception("stopping %s failed", node.id)
        self.runtime.close()
