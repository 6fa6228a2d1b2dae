"""``p2pfl run``: run an experiment from a YAML file or a registered example."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click


def resolve_source(target: str) -> Any:
    """A YAML path, or the config of a registered example."""
    from p2pfl.experiment.config import ConfigError
    from p2pfl.plugins import default_plugin_manager

    if Path(target).is_file():
        return target
    registry = default_plugin_manager().registry("examples")
    if target in registry:
        config = registry.load(target)()
        config.setdefault("name", target)
        return config
    raise ConfigError([f"{target}: not a config file, nor an example ({registry.unknown_message(target)})"])


@click.command()
@click.argument("target")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY.PATH=VALUE",
    help="Override a config value (read as YAML); repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--output", "output_dir", type=click.Path(file_okay=False), help="Output directory (output.dir).")
@click.option(
    "--plugins-dir",
    "plugin_dirs",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Load every module of this folder as a plugin (plugins.dirs); repeatable.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
def run(
    target: str,
    overrides: tuple[str, ...],
    as_json: bool,
    output_dir: str | None,
    plugin_dirs: tuple[str, ...],
    quiet: bool,
) -> None:
    """Run the experiment TARGET: a YAML config file or an example name (see `p2pfl examples list`)."""
    from p2pfl.cli.progress import ProgressDisplay, print_node_table
    from p2pfl.experiment import ConfigError, prepare_config, run_experiment
    from p2pfl.experiment.results import public_summary

    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: model.build may name a module of this folder
    extra = list(overrides)
    if output_dir:
        extra.append(f"output.dir={output_dir}")
    if plugin_dirs:
        extra.append(f"plugins.dirs={json.dumps(list(plugin_dirs))}")
    try:
        cfg, plugins = prepare_config(resolve_source(target), extra)
        observers = [] if quiet else [ProgressDisplay(cfg["training"]["rounds"], cfg["network"]["nodes"])]
        summary = run_experiment(cfg, plugins=plugins, observers=observers)
    except ConfigError as exc:
        click.echo(click.style("error: ", fg="red") + str(exc), err=True)
        sys.exit(2)
    except KeyboardInterrupt:  # before learning started: nothing was measured
        click.echo("interrupted", err=True)
        sys.exit(130)
    if not quiet:
        print_node_table(summary)
    if as_json:
        click.echo(json.dumps(public_summary(summary), indent=2))
    if summary["interrupted"]:
        sys.exit(130)
