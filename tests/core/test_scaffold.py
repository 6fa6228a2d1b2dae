"""Plugin authoring (issue 11): `p2pfl plugins new`, `--plugins-dir`, the `memory_cluster` fixture.

The heavy check generates a project of every kind, installs all of them (editable) into one
throw-away virtual environment that also sees this environment's packages, runs their own
tests with that environment's python and lists them with ``p2pfl plugins list``; one
``p2pfl run`` then uses four of them by name. A scaffold edited to break a conformance rule
must fail its suite with the rule named.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import sysconfig
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from p2pfl.aggregation import FedAvg
from p2pfl.cli import cli
from p2pfl.scaffold import KINDS, core_requirement, generate, plugin_names
from p2pfl.workflow.default import DefaultWorkflow

#: kind -> the plugin name the tests generate
PROJECTS = {
    "aggregator": "p2pfl-demo-mean",
    "compressor": "p2pfl-demo-codec",
    "learner": "p2pfl-demo-learner",
    "protocol": "p2pfl-demo-transport",
    "stage": "p2pfl-demo-stage",
}
TIMEOUT = 900  # generous: the machine may be shared
SMALL_RUN = ["--set", "network.nodes=3", "--set", "training.rounds=2", "--set", "model.params.hidden=[16]"]


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", **kwargs.pop("env", {})}
    return subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, env=env, **kwargs)


# ------------------------------------------------------------------------------ names


def test_names_derived_from_the_plugin_name():
    names = plugin_names("p2pfl-my-mean", "aggregator")
    assert (names.dist, names.package, names.component, names.cls) == (
        "p2pfl-my-mean",
        "p2pfl_my_mean",
        "my-mean",
        "MyMeanAggregator",
    )
    assert plugin_names("fancy_codec", "compressor").dist == "fancy-codec"
    assert plugin_names("fancy_codec", "compressor").cls == "FancyCodec"  # no "CodecCodec"
    assert plugin_names("p2pfl-async", "stage").cls == "AsyncWorkflow"


def test_core_requirement_pins_the_minor_series():
    assert core_requirement("0.5.0") == "p2pfl-core>=0.5,<0.6"
    assert core_requirement("0.12.3") == "p2pfl-core>=0.12,<0.13"
    assert core_requirement("1.4.0") == "p2pfl-core>=1.4,<2"


@pytest.mark.parametrize(
    "name, message",
    [
        ("My-Plugin", "uppercase"),
        ("2fast", "not a valid plugin name"),
        ("my--mean", "not a valid plugin name"),
        ("my mean", "not a valid plugin name"),
        ("p2pfl-2x", "must start with a letter"),
        ("p2pfl-core", "name of a p2pfl distribution"),
        ("p2pfl-torch", "name of a p2pfl distribution"),
        ("class", "Python keyword"),
        ("json", "standard-library"),
        ("numpy", "already importable"),
        ("fedavg", "already registered by plugin 'p2pfl-core'"),
    ],
)
def test_bad_names_exit_2_with_a_clear_error(tmp_path, name, message):
    result = CliRunner().invoke(cli, ["plugins", "new", name, "--kind", "aggregator", "--dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "Invalid value for NAME" in result.output and message in result.output
    assert not any(tmp_path.iterdir())  # nothing written


def test_unknown_kind_and_existing_folder_exit_2(tmp_path):
    result = CliRunner().invoke(cli, ["plugins", "new", "p2pfl-x-mean", "--kind", "optimizer", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "aggregator" in result.output  # lists the choices
    (tmp_path / "p2pfl-x-mean").mkdir()
    (tmp_path / "p2pfl-x-mean" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(cli, ["plugins", "new", "p2pfl-x-mean", "--kind", "aggregator", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "--dir" in result.output and "already exists" in result.output
    assert (tmp_path / "p2pfl-x-mean" / "keep.txt").read_text() == "mine"


# ------------------------------------------------------------------------------ generated files


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_generated_project_layout(tmp_path, kind):
    name = PROJECTS[kind]
    result = CliRunner().invoke(cli, ["plugins", "new", name, "--kind", kind, "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    names = plugin_names(name, kind)
    root = tmp_path / name
    module = KINDS[kind].module
    files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert files == {
        ".gitignore",
        "README.md",
        "pyproject.toml",
        f"src/{names.package}/__about__.py",
        f"src/{names.package}/__init__.py",
        f"src/{names.package}/plugin.py",
        f"src/{names.package}/{module}.py",
        f"tests/test_{names.package}.py",
    }
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["name"] == name
    assert project["project"]["dependencies"] == [core_requirement()]
    assert project["project"]["entry-points"]["p2pfl"] == {name: f"{names.package}.plugin"}
    assert project["build-system"]["build-backend"] == "hatchling.build"
    for path in root.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "${" not in text and "__package__" not in str(path), path
            if path.suffix == ".py":
                compile(text, str(path), "exec")
    plugin = (root / "src" / names.package / "plugin.py").read_text()
    assert f'"{names.package}.{module}:{names.cls}"' in plugin  # a lazy target
    assert f"p2pfl_register_{KINDS[kind].registry}" in plugin
    assert "pip install -e" in result.output and str(root) in result.output


# ------------------------------------------------------------------------------ install, test, list


def child_environment(root: Path) -> Path:
    """A virtual environment whose python also sees this environment's packages; returns its python.

    ``python -m venv --system-site-packages`` is not enough: run from a virtual environment,
    it exposes the *base* interpreter's packages, not this environment's. So the new
    environment gets a ``.pth`` file adding this environment's site directories (which also
    processes their own ``.pth`` files, e.g. editable installs of p2pfl-core).
    """
    run([sys.executable, "-m", "venv", "--without-pip", str(root)]).check_returncode()
    python = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    own = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    parents = dict.fromkeys(
        [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()]
    )
    lines = [f"import site; site.addsitedir({p!r})" for p in parents if Path(p).is_dir()]
    (Path(own) / "_p2pfl_parent_environment.pth").write_text("\n".join(lines) + "\n")
    return python


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Every kind generated, and all installed editable into one throw-away environment."""
    for module in ("hatchling", "pip"):
        try:
            __import__(module)
        except ImportError:
            pytest.skip(f"{module} is not importable here: the generated projects are built offline with it")
    root = tmp_path_factory.mktemp("scaffolds")
    projects = {kind: generate(name, kind, root) for kind, name in PROJECTS.items()}
    python = child_environment(root / "venv")
    editable = [arg for path in projects.values() for arg in ("-e", str(path))]
    result = run([str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", *editable])
    assert result.returncode == 0, result.stdout + result.stderr
    return python, projects, root


def test_scaffolds_pass_their_own_tests(installed):
    python, projects, root = installed
    report = root / "report.xml"
    tests = [str(path / "tests") for path in projects.values()]
    result = run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *tests], cwd=root
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    packages = {plugin_names(name, kind).package for kind, name in PROJECTS.items()}
    passed = dict.fromkeys(packages, 0)
    for case in ET.parse(report).getroot().iter("testcase"):
        assert case.find("failure") is None and case.find("error") is None
        package = next(p for p in packages if p in case.get("classname", ""))
        passed[package] += case.find("skipped") is None
    assert all(count >= 2 for count in passed.values()), passed  # every project's tests ran


def test_scaffolds_are_discovered_and_listed_lazily(installed):
    python, _, _ = installed
    result = run([str(python), "-m", "p2pfl", "plugins", "list", "--json"])
    assert result.returncode == 0, result.stderr
    listed = {p["name"]: p for p in json.loads(result.stdout)}
    for kind, name in PROJECTS.items():
        names = plugin_names(name, kind)
        plugin = listed[name]
        assert plugin["status"] == "ok", plugin["error"]
        assert plugin["distribution"] == name and plugin["version"] == "0.1.0"
        assert plugin["module"] == f"{names.package}.plugin"
        assert plugin["provides"] == {KINDS[kind].registry: [names.component]}
    # The plugins registered lazy targets: listing imported no component module.
    probe = (
        "import json, sys; from p2pfl.plugins import PluginManager; PluginManager().registries; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('p2pfl_demo_'))))"
    )
    modules = json.loads(run([str(python), "-c", probe]).stdout)
    for kind, name in PROJECTS.items():
        package = plugin_names(name, kind).package
        assert f"{package}.plugin" in modules and f"{package}.{KINDS[kind].module}" not in modules, modules


def test_scaffolds_run_in_an_experiment_by_name(installed, tmp_path):
    python, _, _ = installed
    learner = plugin_names(PROJECTS["learner"], "learner")
    result = run(
        [
            str(python), "-m", "p2pfl", "run", "mnist", "--json", "--quiet", "--output", str(tmp_path / "out"),
            *SMALL_RUN,
            "--set", "aggregator.name=demo-mean",
            "--set", "compression=[{name: demo-codec}]",
            "--set", "training.workflow=demo-stage",
            "--set", "model.learner=demo-learner",
            "--set", f"model.build={learner.package}.learner:build_model",
            "--set", "model.params={}",
            "--set", "model.options={lr: 0.1}",
        ],
        cwd=tmp_path,  # whatever an installed observer writes to the working directory lands here
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["rounds_completed"] == 2 and summary["models_agree"] and summary["final_accuracy"] > 0.5
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(row["model_change"] > 0 for row in rows)  # the scaffolded stage ran


def test_broken_conformance_rule_is_named(tmp_path):
    project = generate("p2pfl-broken-mean", "aggregator", tmp_path)
    source = project / "src" / "p2pfl_broken_mean" / "aggregator.py"
    text = source.read_text()
    assert "num_samples=total," in text
    source.write_text(text.replace("num_samples=total,", "num_samples=len(updates),"))  # the bug
    result = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "Conformance", str(project / "tests")],
        env={"PYTHONPATH": str(project / "src")},
        cwd=project,
    )
    assert result.returncode == 1, result.stdout[-3000:]
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    assert any("::test_result_contributors_and_samples" in line for line in failed), failed
    # pytest's report of that test names the rule, what it asks, and what went wrong
    assert (
        "conformance: the result's num_samples must be the sum of the inputs' num_samples "
        "(rule aggregator.num-samples): got 5, expected 150" in result.stdout  # 5 updates of 10, 20, ..., 50 samples
    )


# ------------------------------------------------------------------------------ --plugins-dir

LOCAL_PLUGIN = """
    import os

    from p2pfl import hookimpl
    from p2pfl.aggregation import FedAvg


    class CountingMean(FedAvg):
        name = "counting-mean"

        def aggregate(self, updates, global_parameters=None):
            with open(os.environ["COUNTING_MEAN_LOG"], "a") as fh:
                fh.write(f"{len(updates)}\\n")
            return super().aggregate(updates, global_parameters)


    @hookimpl
    def p2pfl_register_aggregators(register):
        register("counting-mean", CountingMean)
"""


@pytest.fixture
def local_plugins(tmp_path):
    folder = tmp_path / "local_plugins"
    folder.mkdir()
    (folder / "counting_mean.py").write_text(textwrap.dedent(LOCAL_PLUGIN))
    (folder / "_helper.py").write_text("raise RuntimeError('modules starting with _ are not plugins')\n")
    return folder


def test_plugins_dir_option_loads_a_local_aggregator(tmp_path, local_plugins):
    log = tmp_path / "aggregations.log"
    result = run(
        [sys.executable, "-m", "p2pfl", "run", "mnist", "--json", "--quiet", "--output", str(tmp_path / "out"),
         "--plugins-dir", str(local_plugins), "--set", "aggregator.name=counting-mean", *SMALL_RUN],
        env={"COUNTING_MEAN_LOG": str(log)},
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["models_agree"]
    assert log.read_text().split() == ["3"] * 6  # each of 3 nodes aggregated the 3 updates of each of 2 rounds


def test_plugins_dirs_config_key_is_relative_to_the_working_directory(tmp_path, local_plugins):
    log = tmp_path / "aggregations.log"
    config = {
        "network": {"nodes": 3, "topology": "ring"},
        "model": {"learner": "numpy", "params": {"hidden": [16]}},
        "training": {"rounds": 1},
        "aggregator": {"name": "counting-mean"},
        "plugins": {"dirs": [local_plugins.name]},
    }
    (tmp_path / "exp.json").write_text(json.dumps(config))  # JSON is YAML
    result = run(
        [sys.executable, "-m", "p2pfl", "run", "exp.json", "--json", "--quiet"],
        env={"COUNTING_MEAN_LOG": str(log)},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert log.read_text().split() == ["3"] * 3


def test_missing_plugins_dir_is_a_config_error(tmp_path):
    result = run(
        [sys.executable, "-m", "p2pfl", "run", "mnist", "--plugins-dir", str(tmp_path / "nowhere")], cwd=tmp_path
    )
    assert result.returncode == 2
    assert "plugins.dirs" in result.stderr and "nowhere" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------------------ memory_cluster


def test_memory_cluster_fixture(memory_cluster):
    cluster = memory_cluster(2, aggregator=FedAvg(), workflow=DefaultWorkflow)
    first, second = cluster.nodes
    assert first.workflow is not second.workflow  # one workflow object per node
    x0, x1 = (node.learner.data.numpy("train")[0] for node in cluster.nodes)
    assert len(x0) == len(x1) == 120
    assert {row.tobytes() for row in x0}.isdisjoint(row.tobytes() for row in x1)  # an IID split of one task
    assert cluster.learn(rounds=1)
    assert cluster.agree() and first.history[-1]["accuracy"] > 0.8
