"""``p2pfl certs``: create a certificate authority and per-node certificates for TLS.

Imports only click at module level; cryptography is imported when the command runs.
"""

from __future__ import annotations

import click

LOOPBACK = ("localhost", "127.0.0.1", "::1")


def _parse_node(spec: str) -> tuple[str, list[str]]:
    """``node-0`` or ``node-0=10.0.0.5,alpha.lan`` → (id, its own hosts)."""
    node_id, _, hosts = spec.partition("=")
    return node_id.strip(), [h.strip() for h in hosts.split(",") if h.strip()]


@click.command("certs")
@click.argument("folder", type=click.Path(file_okay=False))
@click.argument("nodes", nargs=-1, required=True)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="HOST",
    help="A host name or IP address put in every node's certificate (repeatable).",
)
@click.option(
    "--no-loopback",
    is_flag=True,
    help=f"Do not add {', '.join(LOOPBACK)} to the certificates (they are by default, for local runs).",
)
@click.option(
    "--days", type=click.IntRange(1, 3650), default=825, show_default=True, help="Validity of the node certificates."
)
@click.option("--ca-name", default="p2pfl CA", show_default=True, help="Common name of a new CA.")
def certs(
    folder: str, nodes: tuple[str, ...], hosts: tuple[str, ...], no_loopback: bool, days: int, ca_name: str
) -> None:
    """Create a CA (or reuse the one in FOLDER) and a certificate for each of NODES.

    Each NODE is a node id, optionally followed by its own hosts/IPs: node-0=10.0.0.5,alpha.lan.
    The node id is the certificate's common name and a DNS name in it; the hosts given here and
    with --host are added as further names. Writes FOLDER/ca.pem, FOLDER/ca.key (keep it off the
    nodes), and FOLDER/<node>.pem, FOLDER/<node>.key (mode 0600) per node.

    \b
    Example:
      p2pfl certs certs/ node-0=10.0.0.5 node-1=10.0.0.6
    """
    from p2pfl_grpc.certs import CertificateError, create_certificates

    common = [*hosts, *(() if no_loopback else LOOPBACK)]
    wanted: dict[str, list[str]] = {}
    for spec in nodes:
        node_id, own = _parse_node(spec)
        if node_id in wanted:
            raise click.BadParameter(f"node {node_id!r} is listed twice", param_hint="NODES")
        wanted[node_id] = [*own, *common]
    try:
        written = create_certificates(folder, wanted, ca_name=ca_name, days=days)
    except CertificateError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"CA: {folder}/ca.pem (private key {folder}/ca.key: keep it off the nodes)")
    for files in written:
        click.echo(f"{files.node_id}: {files.cert}, {files.key} (names: {', '.join([files.node_id, *files.hosts])})")


# ------------------------------------------------------------------------------ p2pfl node


def _security(certs_dir: str | None, insecure: bool) -> dict[str, object]:
    if certs_dir and insecure:
        raise click.UsageError("--certs-dir and --insecure exclude each other")
    if certs_dir:
        return {"certs_dir": certs_dir}
    return {"insecure": True} if insecure else {}


@click.group("node")
def node() -> None:
    """Run one node as a long-lived process, and command running nodes."""


@node.command("run")
@click.argument("target")
@click.option("--index", type=int, required=True, help="Which node of the experiment this is (its data partition).")
@click.option("--listen", default="127.0.0.1:0", show_default=True, help="host:port, [v6]:port or unix:/path.")
@click.option("--advertise", help="The address other nodes dial, if not the listen address (NAT, 0.0.0.0).")
@click.option("--peer", "peers", multiple=True, metavar="ADDRESS", help="A node to connect to (repeatable).")
@click.option("--id", "node_id", help="Node id (default: node-<index>, as `p2pfl run` names it).")
@click.option("--certs-dir", type=click.Path(file_okay=False), help="Folder of `p2pfl certs` (mutual TLS).")
@click.option("--insecure", is_flag=True, help="Plaintext (trusted networks only).")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a config value.")
@click.option(
    "--join-timeout",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds to keep retrying peers that are not up yet.",
)
@click.option("--no-control", is_flag=True, help="Refuse operator commands (start-learning, status).")
@click.option("--json", "as_json", is_flag=True, help="Events as JSON lines.")
def node_run(
    target: str,
    index: int,
    listen: str,
    advertise: str | None,
    peers: tuple[str, ...],
    node_id: str | None,
    certs_dir: str | None,
    insecure: bool,
    overrides: tuple[str, ...],
    join_timeout: float,
    no_control: bool,
    as_json: bool,
) -> None:
    """Run node INDEX of the experiment TARGET (a YAML file or an example) until Ctrl-C / SIGTERM.

    Every node of a deployment uses the same TARGET (and --set overrides): it fixes the data
    split (network.nodes), model, aggregator and codecs. Learning starts with
    `p2pfl node start-learning ADDRESS` against any node.
    """
    from p2pfl.cli.run_cmd import resolve_source
    from p2pfl.experiment import ConfigError, prepare_config
    from p2pfl_grpc.node_process import EventWriter, HumanWriter, run_daemon

    options: dict[str, object] = _security(certs_dir, insecure)
    if advertise:
        options["advertise"] = advertise
    try:
        cfg, plugins = prepare_config(resolve_source(target), list(overrides))
        run_daemon(
            cfg,
            plugins,
            index,
            listen=listen,
            node_id=node_id,
            peers=peers,
            protocol_options=options,
            control=not no_control,
            join_timeout=join_timeout,
            emit=EventWriter() if as_json else HumanWriter(),
        )
    except (ConfigError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None


def _command(address: str, name: str, args: dict[str, object], certs_dir: str | None, as_name: str | None) -> None:
    import asyncio
    import json

    from p2pfl_grpc.control import ControlError, send_command

    try:
        result = asyncio.run(send_command(address, name, args, certs_dir=certs_dir, as_name=as_name))
    except ControlError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(result, indent=2))


_client_options = [
    click.option("--certs-dir", type=click.Path(file_okay=False), help="Folder of `p2pfl certs` (TLS)."),
    click.option("--as", "as_name", help="Certificate to present from --certs-dir (default: admin)."),
]


def _with_client_options(fn):  # type: ignore[no-untyped-def]
    for option in reversed(_client_options):
        fn = option(fn)
    return fn


@node.command("start-learning")
@click.argument("address")
@click.option("--rounds", type=int, help="Default: training.rounds of the node's config.")
@click.option("--epochs", type=int, help="Default: training.epochs of the node's config.")
@click.option("--trainset-size", type=int, help="Default: training.trainset_size of the node's config.")
@click.option("--seed", type=int, help="Default: seed of the node's config.")
@_with_client_options
def node_start_learning(
    address: str,
    rounds: int | None,
    epochs: int | None,
    trainset_size: int | None,
    seed: int | None,
    certs_dir: str | None,
    as_name: str | None,
) -> None:
    """Start learning on the whole network, through the node at ADDRESS."""
    args = {"rounds": rounds, "epochs": epochs, "trainset_size": trainset_size, "seed": seed}
    _command(address, "start_learning", {k: v for k, v in args.items() if v is not None}, certs_dir, as_name)


@node.command("status")
@click.argument("address")
@_with_client_options
def node_status(address: str, certs_dir: str | None, as_name: str | None) -> None:
    """Show the state of the node at ADDRESS (status, round, members, last metrics)."""
    _command(address, "status", {}, certs_dir, as_name)


@node.command("stop-learning")
@click.argument("address")
@_with_client_options
def node_stop_learning(address: str, certs_dir: str | None, as_name: str | None) -> None:
    """Stop the running experiment on every node, through the node at ADDRESS."""
    _command(address, "stop_learning", {}, certs_dir, as_name)
