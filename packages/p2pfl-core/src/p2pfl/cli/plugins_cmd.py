"""``p2pfl plugins``: inspect installed plugins (`list`) and create new ones (`new`)."""

from __future__ import annotations

import json

import click

from p2pfl.hookspecs import KINDS
from p2pfl.scaffold.generator import KINDS as SCAFFOLD_KINDS


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


@plugins.command("new")
@click.argument("name")
@click.option("--kind", required=True, type=click.Choice(sorted(SCAFFOLD_KINDS)), help="What the plugin provides.")
@click.option(
    "--dir",
    "directory",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder in which the project folder NAME is created.",
)
def new_plugin(name: str, kind: str, directory: str) -> None:
    """Create a ready-to-install plugin project NAME (e.g. p2pfl-my-mean).

    The project holds a pyproject with the `p2pfl` entry point, the hook implementation, a
    documented component that works as generated, tests using p2pfl.testing, and a README.
    The component is registered as NAME without its `p2pfl-` prefix.
    """
    from p2pfl.scaffold import ScaffoldError, generate, plugin_names
    from p2pfl.scaffold.generator import context

    try:
        project = generate(name, kind, directory)
    except ScaffoldError as exc:
        raise click.BadParameter(str(exc), param_hint=exc.param) from None
    names = plugin_names(name, kind)
    component = f"{names.package}.{SCAFFOLD_KINDS[kind].module}.{names.cls}"
    click.echo(f"Created plugin project {project}/ ({kind} {names.component!r}: {component})")
    for path in sorted(p for p in project.rglob("*") if p.is_file()):
        click.echo(f"  {path.relative_to(project.parent)}")
    run = context(names)["run"]
    click.echo("\nNext:")
    click.echo(f"  cd {project}")
    click.echo('  pip install -e ".[test]"')
    click.echo("  pytest")
    click.echo(f"  p2pfl plugins list --kind {SCAFFOLD_KINDS[kind].registry}")
    if run:
        click.echo(f"  {run}")
