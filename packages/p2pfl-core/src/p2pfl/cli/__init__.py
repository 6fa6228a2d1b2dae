"""The ``p2pfl`` command line (click).

Subcommands are imported only when invoked, so ``p2pfl plugins list`` stays fast; plugins
add their own subcommands through the ``p2pfl_register_commands(cli)`` hook.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

# name -> "module:attr" of the click command, imported on use
BUILTIN_COMMANDS = {
    "plugins": "p2pfl.cli.plugins_cmd:plugins",
    "run": "p2pfl.cli.run_cmd:run",
    "examples": "p2pfl.cli.examples_cmd:examples",
}


class LazyGroup(click.Group):
    """A group whose built-in commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*BUILTIN_COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in BUILTIN_COMMANDS and name not in self.commands:
            module, attr = BUILTIN_COMMANDS[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return self.commands.get(name)


def print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from p2pfl import __version__
    from p2pfl.plugins import default_plugin_manager

    click.echo(f"p2pfl-core {__version__}")
    for info in default_plugin_manager().plugins.values():
        if not info.builtin:
            click.echo(f"{info.distribution or info.name} {info.version or '(unversioned)'}")
    ctx.exit()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=print_version,
    help="Show the version of p2pfl-core and of every installed plugin.",
)
def cli() -> None:
    """p2pfl: decentralized federated learning over peer-to-peer networks."""


def add_plugin_commands(group: click.Group) -> None:
    """Let plugins add subcommands; a failing plugin is reported, never fatal."""
    from p2pfl.plugins import default_plugin_manager

    manager = default_plugin_manager()
    for impl in manager.hooks.hook.p2pfl_register_commands.get_hookimpls():
        try:
            impl.function(cli=group)
        except Exception as exc:  # shown as broken by `p2pfl plugins list`
            manager.plugins[impl.plugin_name].mark_broken(f"p2pfl_register_commands failed: {exc}")


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    add_plugin_commands(cli)
    return cli.main(args=sys.argv[1:] if argv is None else argv, prog_name="p2pfl")
