"""``p2pfl plugins``: inspect installed plugins."""

from __future__ import annotations

import json

import click

from p2pfl.hookspecs import KINDS


@click.group()
def plugins() -> None:
    """Inspect and create p2pfl plugins."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.option("--kind", type=click.Choice(KINDS), help="Only plugins providing this kind of component.")
@click.option("--requirements", is_flag=True, help="Print pins that reproduce the installed plugin set.")
def list_plugins(as_json: bool, kind: str | None, requirements: bool) -> None:
    """List installed plugins, what they provide, and broken ones with the reason."""
    from p2pfl.plugins import default_plugin_manager

    manager = default_plugin_manager()
    manager.registries  # noqa: B018 - runs the registration hooks so `provides` is filled in
    infos = [i for i in manager.plugins.values() if kind is None or kind in i.provides]
    if requirements:
        for dist in sorted({(i.distribution, i.version) for i in infos if i.distribution and i.version}):
            click.echo(f"{dist[0]}=={dist[1]}")
        return
    if as_json:
        click.echo(json.dumps([i.as_dict() for i in infos], indent=2))
        return
    for info in infos:
        label = f"{info.name} {info.version or ''}".strip()
        origin = "built-in" if info.builtin else (info.distribution or info.module)
        status = click.style("ok", fg="green") if info.status == "ok" else click.style("BROKEN", fg="red")
        click.echo(f"{click.style(label, bold=True)}  [{origin}]  {status}")
        if info.error:
            click.echo(f"    error: {info.error}")
        for k in KINDS:
            if info.provides.get(k):
                click.echo(f"    {k + ':':<14}{', '.join(sorted(info.provides[k]))}")
