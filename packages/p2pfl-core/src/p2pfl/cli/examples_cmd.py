"""``p2pfl examples``: list the runnable examples."""

from __future__ import annotations

import click


@click.group()
def examples() -> None:
    """Runnable examples registered by plugins (run one with `p2pfl run NAME`)."""


@examples.command("list")
def list_examples() -> None:
    """List example names with their description and plugin."""
    from p2pfl.plugins import default_plugin_manager

    registry = default_plugin_manager().registry("examples")
    for component in registry:
        description = component.metadata.get("description", "")
        click.echo(f"{component.name:<22}{description}  [{component.plugin}]")
