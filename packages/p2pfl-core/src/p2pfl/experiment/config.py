"""Experiment configuration: loading, ``--set`` overrides and validation.

Validation collects *every* problem (wrong key, wrong type, unknown component) with its key
path and the accepted values, so a user fixes a config in one go. Components are referred
to by their registered plugin names; user code by ``"module:attr"`` strings.
"""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from p2pfl.node.settings import NodeSettings
from p2pfl.plugins import PluginManager
from p2pfl.plugins.registry import singular

DEFAULTS: dict[str, Any] = {
    "name": "experiment",
    "seed": 0,
    "network": {"nodes": 4, "topology": "full", "protocol": "memory", "protocol_options": {}, "processes": False},
    "data": {"dataset": "mnist", "partitioning": {"name": "iid"}, "batch_size": 32},
    "model": {"learner": None, "build": "p2pfl.examples.models:mlp", "params": {}, "options": {}},
    "training": {"rounds": 3, "epochs": 1, "trainset_size": None, "workflow": "default", "timeout": 3600},
    "aggregator": {"name": "fedavg"},
    "compression": [],
    "settings": {},
    "output": {"dir": "results/{name}", "plots": True},  # dir: null writes nothing
    "plugins": {"dirs": []},
    "attack": None,
}


class ConfigError(ValueError):
    """The configuration is invalid; ``problems`` lists every ``key.path: message``."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid experiment configuration:\n" + "\n".join(f"  - {p}" for p in self.problems))


# ------------------------------------------------------------------------------ loading


def load_config(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Read a YAML file (or copy a mapping) into a plain dict."""
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    path = Path(source)
    try:
        raw = yaml.safe_load(path.read_text())
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not a UTF-8 text file"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: the top level must be a mapping"])
    raw.setdefault("name", path.stem)
    return raw


def apply_overrides(config: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides; values are read as YAML (lists and mappings work)."""
    config = copy.deepcopy(config)
    problems = []
    for item in overrides:
        path, sep, text = item.partition("=")
        if not sep or not path.strip():
            problems.append(f"--set {item!r}: expected key.path=value")
            continue
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            problems.append(f"--set {path}: value is not valid YAML: {exc}")
            continue
        keys = path.strip().split(".")
        node = config
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value
    if problems:
        raise ConfigError(problems)
    return config


def merge_defaults(config: Mapping[str, Any], defaults: Mapping[str, Any] = DEFAULTS) -> dict[str, Any]:
    """Defaults filled in under the user's values (mappings merged recursively)."""
    out = copy.deepcopy(dict(defaults))
    for key, value in config.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict) and key not in ("settings",):
            out[key] = merge_defaults(value, out[key])
        else:
            out[key] = copy.deepcopy(value)
    return out


# ------------------------------------------------------------------------------ validation


def component_spec(value: Any) -> tuple[str | None, dict[str, Any]]:
    """``"name"`` or ``{"name": ..., **params}`` → ``(name, params)``."""
    if isinstance(value, str):
        return value, {}
    if isinstance(value, Mapping):
        params = dict(value)
        name = params.pop("name", None)
        return (name if isinstance(name, str) else None), params
    return None, {}


class Validator:
    """Collects problems while walking a merged config."""

    def __init__(self, plugins: PluginManager) -> None:
        self.plugins = plugins
        self.problems: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def keys(self, path: str, value: Any, allowed: Sequence[str]) -> bool:
        if not isinstance(value, Mapping):
            self.add(path, f"must be a mapping, got {type(value).__name__}")
            return False
        for key in value:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), allowed, n=1)
                more = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.add(f"{path}.{key}" if path else str(key), f"unknown key{more}; accepted: {', '.join(allowed)}")
        return True

    def typed(
        self,
        path: str,
        value: Any,
        kind: type | tuple[type, ...],
        check: Callable[[Any], bool] | None = None,
        expect: str = "",
    ) -> None:
        ok = isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, float, (int, float)))
        if not ok or (check is not None and not check(value)):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            self.add(path, f"must be {expect or names}, got {value!r}")

    def component(self, path: str, kind: str, value: Any, optional: bool = False) -> None:
        if value is None and optional:
            return
        name, _ = component_spec(value)
        if name is None:
            self.add(path, f"must be the name of a {singular(kind)} or a mapping with 'name'; got {value!r}")
            return
        registry = self.plugins.registry(kind)
        if name not in registry:
            self.add(path, registry.unknown_message(name))


def validate(config: Mapping[str, Any], plugins: PluginManager) -> dict[str, Any]:
    """Merge defaults, check everything, and return the resolved config (or raise ConfigError)."""
    v = Validator(plugins)
    v.keys("", config, list(DEFAULTS))
    cfg = merge_defaults({k: val for k, val in config.items() if k in DEFAULTS})
    v.typed("name", cfg["name"], str)
    v.typed("seed", cfg["seed"], int, lambda s: s >= 0, "an integer >= 0")
    for section in ("network", "data", "model", "training", "output", "plugins", "settings"):
        if section == "settings":
            if not isinstance(cfg[section], Mapping):
                v.add(section, f"must be a mapping, got {type(cfg[section]).__name__}")
        else:
            v.keys(section, cfg[section], list(DEFAULTS[section]))
    if v.problems and any(
        not isinstance(cfg[s], Mapping)
        for s in ("network", "data", "model", "training", "output", "plugins", "settings")
    ):
        raise ConfigError(v.problems)  # the checks below need the sections to be mappings
    _network(v, cfg["network"])
    _data(v, cfg["data"])
    _model(v, cfg["model"])
    _training(v, cfg["training"], cfg["network"].get("nodes"))
    v.component("aggregator", "aggregators", cfg["aggregator"])
    _compression(v, cfg["compression"])
    _settings(v, cfg["settings"])
    v.typed("output.plots", cfg["output"]["plots"], bool)
    if cfg["output"]["dir"]:
        v.typed("output.dir", cfg["output"]["dir"], str)
        if isinstance(cfg["output"]["dir"], str) and isinstance(cfg["name"], str):
            cfg["output"]["dir"] = cfg["output"]["dir"].replace("{name}", cfg["name"])
    v.typed("plugins.dirs", cfg["plugins"]["dirs"], list)
    if cfg["attack"] is not None:
        _attack(v, cfg["attack"], cfg["network"].get("nodes"))
    if v.problems:
        raise ConfigError(v.problems)
    return cfg


def _network(v: Validator, net: Mapping[str, Any]) -> None:
    v.typed("network.nodes", net["nodes"], int, lambda n: n >= 1, "an integer >= 1")
    v.component("network.topology", "topologies", net["topology"])
    v.component("network.protocol", "protocols", net["protocol"])
    v.typed("network.protocol_options", net["protocol_options"], dict)
    v.typed("network.processes", net["processes"], bool)


def _data(v: Validator, data: Mapping[str, Any]) -> None:
    v.component("data.dataset", "datasets", data["dataset"])
    v.component("data.partitioning", "partitioners", data["partitioning"])
    v.typed("data.batch_size", data["batch_size"], int, lambda n: n >= 1, "an integer >= 1")


def _model(v: Validator, model: Mapping[str, Any]) -> None:
    v.component("model.learner", "learners", model["learner"], optional=True)
    v.typed("model.build", model["build"], str, lambda s: ":" in s, "a 'module:callable' string")
    v.typed("model.params", model["params"], dict)
    v.typed("model.options", model["options"], dict)


def _training(v: Validator, training: Mapping[str, Any], nodes: Any) -> None:
    v.typed("training.rounds", training["rounds"], int, lambda n: n >= 1, "an integer >= 1")
    v.typed("training.epochs", training["epochs"], int, lambda n: n >= 0, "an integer >= 0")
    size = training["trainset_size"]
    if size is not None:
        bound = nodes if isinstance(nodes, int) else None
        v.typed(
            "training.trainset_size",
            size,
            int,
            lambda n: n >= 1 and (bound is None or n <= bound),
            f"an integer between 1 and network.nodes ({bound})",
        )
    v.component("training.workflow", "stages", training["workflow"])
    v.typed(
        "training.timeout",
        training["timeout"],
        (int, float),
        lambda t: 0 < t < math.inf,
        "a positive, finite number of seconds",
    )


def _compression(v: Validator, compression: Any) -> None:
    if not isinstance(compression, list):
        v.add("compression", f"must be a list of codecs, got {compression!r}")
        return
    for i, codec in enumerate(compression):
        v.component(f"compression[{i}]", "compressors", codec)


def _attack(v: Validator, attack: Any, nodes: Any) -> None:
    from p2pfl.experiment.attacks import KINDS

    if not v.keys("attack", attack, ["kind", "nodes", "factor", "scale", "seed"]):
        return
    if attack.get("kind") not in KINDS:
        v.add("attack.kind", f"must be one of {', '.join(KINDS)}; got {attack.get('kind')!r}")
    bound = nodes if isinstance(nodes, int) else 0
    v.typed(
        "attack.nodes",
        attack.get("nodes"),
        list,
        lambda ns: all(isinstance(n, int) and 0 <= n < bound for n in ns),
        f"a list of node indices below {bound}",
    )
    for key in ("factor", "scale"):
        if key in attack:
            v.typed(f"attack.{key}", attack[key], (int, float))


def _settings(v: Validator, settings: Any) -> None:
    allowed = [f.name for f in fields(NodeSettings)]
    if not v.keys("settings", settings, allowed):
        return
    defaults = NodeSettings()
    for key, value in settings.items():
        if key not in allowed:
            continue
        kind = type(getattr(defaults, key))
        if kind is bool:
            v.typed(f"settings.{key}", value, bool)
        else:  # timeouts, capacities and the hop limit are positive; max_rounds_ahead may be 0
            kinds = (int, float) if kind is float else kind
            if key == "max_rounds_ahead":
                v.typed(f"settings.{key}", value, kinds, lambda x: 0 <= x < math.inf, "an integer >= 0")
            else:
                v.typed(f"settings.{key}", value, kinds, lambda x: 0 < x < math.inf, "a positive, finite number")
