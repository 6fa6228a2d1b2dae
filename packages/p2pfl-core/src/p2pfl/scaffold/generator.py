"""Generate a third-party plugin project from the templates shipped with p2pfl-core.

Layout of ``templates/``: ``common/`` holds the files of every project (pyproject, README,
package ``__init__``); ``<kind>/`` holds the files of one kind (the hookimpl module, the
component's module, its tests) and ``<kind>/usage.part``, the kind's "use it" section of the
README. In template paths ``__package__`` becomes the import package and a leading ``dot-``
becomes ``.``; files ending in ``.tmpl`` are filled in with :class:`string.Template`
(``${name}`` placeholders), the suffix dropped.

This module imports nothing heavy: ``p2pfl plugins new`` must start fast.
"""

from __future__ import annotations

import importlib.util
import keyword
import re
import string
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from p2pfl.__about__ import __version__

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


class ScaffoldError(ValueError):
    """The plugin cannot be generated; ``param`` is the CLI parameter at fault (``NAME``, ``--dir``)."""

    def __init__(self, message: str, param: str = "NAME") -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Kind:
    """What ``--kind`` generates."""

    #: the plugin kind (registration hook ``p2pfl_register_<registry>``)
    registry: str
    #: the component's module in the generated package
    module: str
    #: appended to the class name (``my-mean`` -> ``MyMeanAggregator``)
    suffix: str
    #: names the component module imports; the generated class must not shadow them
    reserved: frozenset[str]
    #: the command that uses the component in an experiment (``{name}``/``{package}`` filled in)
    run: str


KINDS: dict[str, Kind] = {
    "aggregator": Kind(
        "aggregators",
        "aggregator",
        "Aggregator",
        frozenset({"AggregationError", "Aggregator", "Update"}),
        "p2pfl run mnist --set aggregator.name={name}",
    ),
    "compressor": Kind(
        "compressors",
        "codec",
        "Codec",
        frozenset({"Codec", "CodecError"}),
        'p2pfl run mnist --set "compression=[{{name: {name}}}]"',
    ),
    "learner": Kind(
        "learners",
        "learner",
        "Learner",
        frozenset({"FitResult", "GradientCorrection", "Learner", "NodeData", "ParameterMismatchError", "SoftmaxModel"}),
        "p2pfl run mnist --set model.learner={name} --set model.build={package}.learner:build_model"
        ' --set "model.params={{}}" --set "model.options={{lr: 0.1}}"',
    ),
    "protocol": Kind(
        "protocols",
        "transport",
        "Transport",
        frozenset({"MemoryNetwork", "MemoryTransport", "Message"}),
        "",  # `p2pfl run` builds a simulated network for the `memory` protocol only; see the README
    ),
    "stage": Kind(
        "stages",
        "workflow",
        "Workflow",
        frozenset(
            {
                "Aggregate",
                "DefaultWorkflow",
                "Evaluate",
                "ExchangeUpdates",
                "LocalTraining",
                "ModelChange",
                "RoundContext",
                "SelectTrainSet",
                "Stage",
            }
        ),
        "p2pfl run mnist --set training.workflow={name}",
    ),
}

#: distributions of the p2pfl project itself: a plugin must not take their names
FIRST_PARTY = frozenset(
    {
        "p2pfl",
        "p2pfl-core",
        "p2pfl-grpc",
        "p2pfl-torch",
        "p2pfl-tf",
        "p2pfl-flax",
        "p2pfl-aggregators",
        "p2pfl-compression",
    }
)
NAME_RE = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")
PREFIX = "p2pfl-"


@dataclass(frozen=True)
class PluginNames:
    """Every name derived from ``p2pfl plugins new NAME``."""

    #: the distribution (``pip install``, entry-point name): ``p2pfl-my-mean``
    dist: str
    #: the import package: ``p2pfl_my_mean``
    package: str
    #: the registered component name, ``NAME`` without a ``p2pfl-`` prefix: ``my-mean``
    component: str
    #: the component's class: ``MyMeanAggregator``
    cls: str
    kind: str


def core_requirement(version: str = __version__) -> str:
    """The ``p2pfl-core`` range a plugin should pin: the running core's minor series."""
    major, minor = (int(part) for part in version.split(".")[:2])
    upper = f"{major}.{minor + 1}" if major == 0 else str(major + 1)
    return f"p2pfl-core>={major}.{minor},<{upper}"


def plugin_names(name: str, kind: str) -> PluginNames:
    """Validate ``name`` and derive the distribution, package, component and class names."""
    if kind not in KINDS:
        raise ScaffoldError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}", param="--kind")
    if not NAME_RE.fullmatch(name):
        raise ScaffoldError(_name_problem(name))
    dist = name.replace("_", "-")
    package = dist.replace("-", "_")
    component = dist[len(PREFIX) :] if dist.startswith(PREFIX) else dist
    if dist in FIRST_PARTY:
        raise ScaffoldError(f"{name!r} is the name of a p2pfl distribution; choose your own (e.g. p2pfl-my-{kind})")
    if not component[:1].isalpha():
        raise ScaffoldError(f"{name!r}: the component name {component!r} (NAME less 'p2pfl-') must start with a letter")
    if keyword.iskeyword(package):
        raise ScaffoldError(f"{name!r} would be imported as {package!r}, a Python keyword")
    if package in sys.stdlib_module_names:
        raise ScaffoldError(f"{name!r} would be imported as {package!r}, which shadows the standard-library module")
    camel = "".join(part.capitalize() for part in component.split("-"))
    spec = KINDS[kind]
    cls = camel if camel.endswith(spec.suffix) and camel != spec.suffix else camel + spec.suffix
    if cls in spec.reserved:
        raise ScaffoldError(f"{name!r}: the class {cls!r} would shadow a name the {kind} template imports")
    return PluginNames(dist=dist, package=package, component=component, cls=cls, kind=kind)


def _name_problem(name: str) -> str:
    hint = "use lowercase letters, digits and single hyphens, starting with a letter (e.g. p2pfl-my-mean)"
    if not name:
        return "the plugin name is empty; " + hint
    if name != name.lower():
        return f"{name!r} has uppercase letters; Python distribution and package names should not: try {name.lower()!r}"
    return f"{name!r} is not a valid plugin name: {hint}"


def check_available(names: PluginNames, plugins: Any = None) -> None:
    """Refuse names already importable, or already registered for the kind by an installed plugin."""
    found = importlib.util.find_spec(names.package)
    if found is not None:
        where = found.origin or ", ".join(found.submodule_search_locations or [])
        raise ScaffoldError(f"a module named {names.package!r} is already importable ({where}); choose another name")
    if plugins is None:
        from p2pfl.plugins import default_plugin_manager

        plugins = default_plugin_manager()
    registry = plugins.registry(KINDS[names.kind].registry)
    if names.component in registry:
        owner = registry.get(names.component).plugin
        raise ScaffoldError(
            f"{KINDS[names.kind].registry[:-1]} {names.component!r} is already registered by plugin {owner!r}; "
            "names are global, choose another"
        )


def context(names: PluginNames) -> dict[str, str]:
    """The template placeholders."""
    spec = KINDS[names.kind]
    run = spec.run.format(name=names.component, package=names.package)
    return {
        "dist": names.dist,
        "package": names.package,
        "name": names.component,
        "cls": names.cls,
        "kind": names.kind,
        "registry": spec.registry,
        "module": spec.module,
        "core_requirement": core_requirement(),
        "core_version": __version__,
        "run": run,
    }


def templates() -> Traversable:
    return resources.files("p2pfl.scaffold").joinpath("templates")


def render(text: str, values: dict[str, str], where: str) -> str:
    try:
        return string.Template(text).substitute(values)
    except (KeyError, ValueError) as exc:  # a bug in a template, not in the user's input
        raise RuntimeError(f"template {where}: bad placeholder {exc}") from exc


def project_files(names: PluginNames) -> dict[str, str]:
    """Relative path -> content of every file of the project."""
    values = context(names)
    root = templates()
    kind_dir = root.joinpath(names.kind)
    values["usage"] = render(kind_dir.joinpath("usage.part").read_text(encoding="utf-8"), values, "usage.part").strip()
    files: dict[str, str] = {}
    for base in (root.joinpath("common"), kind_dir):
        for rel, item in _walk(base):
            if rel == "usage.part":
                continue
            text = item.read_text(encoding="utf-8")
            if rel.endswith(".tmpl"):
                rel, text = rel[: -len(".tmpl")], render(text, values, rel)
            parts = [p.replace("__package__", names.package) for p in rel.split("/")]
            parts = ["." + p[len("dot-") :] if p.startswith("dot-") else p for p in parts]
            files["/".join(parts)] = text
    return files


def _walk(base: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    out: list[tuple[str, Traversable]] = []
    for item in sorted(base.iterdir(), key=lambda t: t.name):
        if item.name == "__pycache__":
            continue
        rel = f"{prefix}{item.name}"
        out.extend(_walk(item, rel + "/") if item.is_dir() else [(rel, item)])
    return out


def generate(name: str, kind: str, directory: str | Path = ".", *, check: bool = True, plugins: Any = None) -> Path:
    """Write the project of plugin ``name`` (of ``kind``) into ``directory/<dist>`` and return its path.

    Args:
        name: the plugin's distribution name (``p2pfl-my-mean``); the component is
            registered under it without the ``p2pfl-`` prefix (``my-mean``).
        kind: ``aggregator``, ``compressor``, ``learner``, ``protocol`` or ``stage``.
        directory: the folder that receives the project folder.
        check: refuse names already importable or registered by installed plugins.
        plugins: the plugin manager checked against (the process default if omitted).

    Raises:
        ScaffoldError: invalid or taken name, or the project folder exists and is not empty.
    """
    names = plugin_names(name, kind)
    if check:
        check_available(names, plugins)
    target = Path(directory) / names.dist
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(f"{target} already exists and is not an empty folder", param="--dir")
    files = project_files(names)
    for rel, text in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target
