"""One node of an experiment config, running in this OS process over the grpc transport.

Used two ways:

* ``p2pfl node run`` (a long-lived daemon on some machine): the node connects to the peers it
  is given and waits; learning is started by ``p2pfl node start-learning`` against any node
  (the transport's Control call, see :mod:`p2pfl_grpc.control`);
* ``network.processes: true`` in ``p2pfl run`` (:mod:`p2pfl_grpc.launcher`): the parent drives
  each node process through JSON lines on its stdin, and reads JSON events on its stdout
  (``python -m p2pfl_grpc.node_process --config FILE --index I --stdio``): commands ``connect``,
  ``await_members``, ``start_learning``, ``report`` (waits for the experiment to end) and ``stop``;
  events ``listening``, ``connected``, ``members``, ``started``, ``trained``, ``round``, ``report``,
  ``error`` and ``stopped``.

The node is built exactly as ``p2pfl run`` builds node ``I`` of the same config (same data
partition, model seed and components), so a multi-process run reproduces the simulation.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from p2pfl import hookimpl
from p2pfl.experiment.runner import build_node as build_experiment_node
from p2pfl.experiment.runner import node_data_for, prepare_config
from p2pfl.experiment.summary import node_summary
from p2pfl.node.node import Node
from p2pfl.plugins import PluginManager

log = logging.getLogger(__name__)


def build_node(
    cfg: Mapping[str, Any],
    plugins: PluginManager,
    index: int,
    *,
    node_id: str | None = None,
    address: str = "",
    protocol_options: Mapping[str, Any] | None = None,
) -> Node:
    """Node ``index`` of ``cfg`` (validated) with its own runtime, built exactly as ``p2pfl run`` builds it."""
    n = cfg["network"]["nodes"]
    if not 0 <= index < n:
        raise ValueError(f"node index {index} is outside the experiment's {n} nodes (network.nodes)")
    data = node_data_for(cfg, plugins)[index]
    options = {**cfg["network"]["protocol_options"], **(protocol_options or {})}
    cfg = {**cfg, "network": {**cfg["network"], "protocol": "grpc"}}  # a daemon always speaks grpc
    return build_experiment_node(cfg, plugins, index, data, node_id=node_id, address=address, protocol_options=options)


class EventWriter:
    """JSON lines on stdout, one per event, from any thread."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields}, default=str)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()


class RoundReporter:
    """A lifecycle observer that reports this process's rounds as events."""

    def __init__(self, emit: EventWriter) -> None:
        self.emit = emit

    @hookimpl
    def p2pfl_round_finished(self, node_id: str, round: int, metrics: dict[str, float]) -> None:
        self.emit("round", node=node_id, round=round, metrics=metrics)

    @hookimpl
    def p2pfl_local_training_done(self, node_id: str, round: int, metrics: dict[str, float]) -> None:
        self.emit("trained", node=node_id, round=round)


def report(node: Node) -> dict[str, Any]:
    """What the parent needs for the experiment summary: core's per-node summary and history."""
    return {"summary": node_summary(node, node.get_parameters()), "history": list(node.history)}


def send_report(node: Node, emit: EventWriter, timeout: float) -> None:
    finished = node.wait_finished(timeout)
    emit("report", node=node.id, finished=finished, **report(node))


def serve_stdio(node: Node, emit: EventWriter) -> None:
    """Obey JSON commands on stdin until ``stop`` or end of input (the parent is gone)."""
    for line in sys.stdin:
        try:
            command = json.loads(line)
            name = command.pop("cmd")
            if name == "connect":
                emit("connected", peer=node.connect(command["address"]))
            elif name == "await_members":
                ok = node.runtime.run(node.await_members(int(command["count"]), float(command["timeout"])))
                emit("members", ok=ok, members=sorted(node.members))
            elif name == "start_learning":
                emit("started", experiment=node.start_learning(**command))
            elif name == "report":  # after the experiment ends (or the timeout passes), without blocking commands
                timeout = float(command.get("timeout", 0))
                threading.Thread(target=send_report, args=(node, emit, timeout), daemon=True).start()
            elif name == "stop_learning":  # the parent was interrupted: stop everywhere, keep what was measured
                node.stop_learning()
                emit("learning_stopped", node=node.id)
            elif name == "stop":
                break
            else:
                emit("error", message=f"unknown command {name!r}")
        except Exception as exc:  # report and go on: the parent decides what a failure means
            emit("error", message=f"{type(exc).__name__}: {exc}")


class HumanWriter(EventWriter):
    """The same events as readable lines (for ``p2pfl node run`` without ``--json``)."""

    def __call__(self, event: str, **fields: Any) -> None:
        if event == "round":
            metrics = ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(fields["metrics"].items())
            )
            line = f"{fields['node']}: round {fields['round']} finished ({metrics})"
        elif event == "trained":
            line = f"{fields['node']}: round {fields['round']} local training done"
        else:
            line = f"{event}: " + ", ".join(f"{k}={v}" for k, v in fields.items())
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()


def _join(node: Node, peers: list[str], deadline: float, stopping: threading.Event, emit: EventWriter) -> None:
    """Connect to each peer, retrying while it is not up yet (machines start in any order)."""
    from p2pfl.communication.transport import PeerUnavailableError

    for address in peers:
        delay, end = 0.5, time.monotonic() + deadline
        while True:
            try:
                emit("connected", peer=node.connect(address), address=address)
                break
            except PeerUnavailableError as exc:
                if time.monotonic() + delay > end:
                    emit("error", message=f"gave up joining {address} after {deadline}s: {exc}")
                    break
                if stopping.wait(delay):  # woken at once by a signal
                    return
                delay = min(delay * 2, 5.0)


def run_daemon(
    cfg: Mapping[str, Any],
    plugins: PluginManager,
    index: int,
    *,
    listen: str,
    node_id: str | None = None,
    peers: Sequence[str] = (),
    protocol_options: Mapping[str, Any] | None = None,
    control: bool = True,
    join_timeout: float = 300.0,
    emit: EventWriter | None = None,
) -> None:
    """Run node ``index`` of ``cfg`` until SIGINT/SIGTERM (``p2pfl node run``)."""
    from p2pfl_grpc.control import NodeControl

    emit = emit or HumanWriter()
    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    reporter = RoundReporter(emit)
    plugins.register(reporter, name=f"p2pfl-grpc-reporter-{id(reporter)}")
    node = build_node(cfg, plugins, index, node_id=node_id, address=listen, protocol_options=protocol_options)
    try:
        if control:
            node.transport.control = NodeControl(node, cfg)  # type: ignore[attr-defined]
        emit("listening", node=node.id, address=node.start(), index=index)
        _join(node, list(peers), join_timeout, stopping, emit)
        emit("ready", node=node.id, neighbors=node.neighbors())
        stopping.wait()
    finally:
        node.stop()
        emit("stopped", node=node.id)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m p2pfl_grpc.node_process", description=__doc__)
    parser.add_argument("--config", required=True, help="experiment config (YAML/JSON path)")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--stdio", action="store_true", help="obey JSON commands on stdin")
    args = parser.parse_args(argv)
    if args.stdio:  # the parent handles Ctrl-C (which the terminal sends to us too) and tells us what to do
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    emit = EventWriter()
    cfg, plugins = prepare_config(args.config)
    reporter = RoundReporter(emit)
    plugins.register(reporter, name=f"p2pfl-grpc-reporter-{id(reporter)}")
    node = build_node(cfg, plugins, args.index, address=args.listen)
    try:
        emit("listening", node=node.id, address=node.start(), index=args.index)
        if args.stdio:
            serve_stdio(node, emit)
    finally:
        node.stop()
        emit("stopped", node=node.id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
