"""``network.processes: true``: every node of an experiment in its own OS process on this machine.

:class:`ProcessCluster` starts one ``python -m p2pfl_grpc.node_process --stdio`` per node, wires
the topology, starts learning from node 0, and collects each node's report (core's per-node
summary and its history) once its experiment ends. A node process that dies is reported as
``crashed``; the others carry on, as the runtime's failure handling intends. Round events of
the children are re-announced to this process's plugins (``p2pfl_round_finished``), so
observers such as loggers see them.

:func:`launch_experiment` is what ``GrpcTransport.launch_experiment`` (the hook of
``p2pfl.experiment.run_experiment``) calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from p2pfl.experiment.config import ConfigError
from p2pfl.experiment.runner import finish_experiment, node_id_for, topology_edges
from p2pfl.experiment.summary import summarize_records
from p2pfl.plugins import PluginManager


class NodeProcessError(RuntimeError):
    """A node process failed, or did not answer in time (the text has the end of its log)."""


class NodeProcess:
    """One child process: its commands (stdin) and events (stdout)."""

    def __init__(self, index: int, node_id: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.index, self.node_id, self.proc, self.log = index, node_id, proc, log
        self.address = ""
        self.events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.reader: asyncio.Task[None] | None = None
        self.gone = False

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    async def send(self, cmd: str, **args: Any) -> None:
        if self.gone or self.proc.stdin is None:
            raise NodeProcessError(f"{self.node_id} is gone")
        self.proc.stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        with contextlib.suppress(ConnectionError):
            await self.proc.stdin.drain()

    async def expect(self, event: str, timeout: float) -> dict[str, Any]:
        """The next event named ``event`` (others are skipped); raises on error, exit or timeout."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                record = await asyncio.wait_for(self.events.get(), max(remaining, 0))
            except asyncio.TimeoutError:
                raise NodeProcessError(f"{self.node_id}: no {event!r} within {timeout}s") from None
            if record is None:
                raise NodeProcessError(f"{self.node_id} exited before {event!r}:\n{self.log_tail()}")
            if record["event"] == "error":
                raise NodeProcessError(f"{self.node_id}: {record['message']}\n{self.log_tail()}")
            if record["event"] == event:
                return record

    def kill(self) -> None:
        """SIGKILL: the node vanishes without a goodbye (for failure experiments)."""
        if self.proc.returncode is None:
            self.proc.kill()


class ProcessCluster:
    """The node processes of one experiment (use as an async context manager).

    Args:
        cfg: a validated experiment config (``prepare_config``); it is handed to the children
            as a JSON file, so it must hold plain data.
        plugins: where the children's round events are re-announced.
        workdir: folder for the config file and the children's logs (a temporary one by default).
        listen: each node's listen address (port 0: a free one).
    """

    def __init__(
        self,
        cfg: Mapping[str, Any],
        plugins: PluginManager,
        workdir: str | Path | None = None,
        listen: str = "127.0.0.1:0",
    ) -> None:
        self.cfg, self.plugins, self.listen = cfg, plugins, listen
        self._tmp = tempfile.TemporaryDirectory(prefix="p2pfl-nodes-") if workdir is None else None
        self.workdir = Path(workdir or self._tmp.name)  # type: ignore[union-attr]
        self.nodes: list[NodeProcess] = []
        self.timeout = float(max(120.0, cfg["settings"].get("start_timeout", 120.0)))

    async def __aenter__(self) -> ProcessCluster:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start every node process and wait until each listens."""
        config = self.workdir / "config.json"
        try:
            config.write_text(json.dumps(self.cfg))
        except TypeError as exc:
            raise ConfigError([f"network.processes: the config must hold plain data only ({exc})"]) from None
        for i in range(self.cfg["network"]["nodes"]):
            log = self.workdir / f"node-{i}.log"
            with log.open("wb") as err:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "p2pfl_grpc.node_process",
                    "--config",
                    str(config),
                    "--index",
                    str(i),
                    "--listen",
                    self.listen,
                    "--stdio",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=err,
                )
            node = NodeProcess(i, node_id_for(self.cfg, i), proc, log)
            node.reader = asyncio.get_running_loop().create_task(self._read(node))
            self.nodes.append(node)
        for node in self.nodes:
            node.address = (await node.expect("listening", self.timeout))["address"]

    async def _read(self, node: NodeProcess) -> None:
        assert node.proc.stdout is not None
        async for line in node.proc.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # not ours (a library printing to stdout)
            if record.get("event") == "round":
                self.plugins.notify(
                    "p2pfl_metrics_reported", node_id=record["node"], round=record["round"], metrics=record["metrics"]
                )
                self.plugins.notify(
                    "p2pfl_round_finished", node_id=record["node"], round=record["round"], metrics=record["metrics"]
                )
            await node.events.put(record)
        node.gone = True
        await node.events.put(None)

    async def connect(self, edges: Sequence[tuple[int, int]]) -> None:
        """Connect the topology, then wait until node 0 knows every node."""
        for i, j in edges:
            await self.nodes[i].send("connect", address=self.nodes[j].address)
            await self.nodes[i].expect("connected", self.timeout)
        first = self.nodes[0]
        await first.send("await_members", count=len(self.nodes), timeout=self.timeout)
        members = await first.expect("members", self.timeout + 10)
        if not members["ok"]:
            raise NodeProcessError(f"{first.node_id} knows only {members['members']}; is the topology connected?")

    async def start_learning(self) -> None:
        training = self.cfg["training"]
        await self.nodes[0].send(
            "start_learning",
            rounds=training["rounds"],
            epochs=training["epochs"],
            trainset_size=training["trainset_size"],
            seed=self.cfg["seed"],
        )
        await self.nodes[0].expect("started", self.timeout)

    async def reports(self, timeout: float, ask: bool = True) -> list[dict[str, Any] | None]:
        """Each node's report once its experiment ends; ``None`` for a node process that died.

        ``ask=False`` collects reports already asked for (after an interrupted wait).
        """

        async def one(node: NodeProcess) -> dict[str, Any] | None:
            try:
                if ask:
                    await node.send("report", timeout=timeout)
                return await node.expect("report", timeout + 30)
            except NodeProcessError:
                return None

        return list(await asyncio.gather(*(one(n) for n in self.nodes)))

    async def close(self) -> None:
        """Stop every node (cleanly when it still answers) and reap the processes."""
        for node in self.nodes:
            with contextlib.suppress(NodeProcessError, ConnectionError):
                await node.send("stop")
        for node in self.nodes:
            try:
                await asyncio.wait_for(node.proc.wait(), 30)
            except asyncio.TimeoutError:
                node.kill()
                await node.proc.wait()
            if node.reader is not None:
                await asyncio.gather(node.reader, return_exceptions=True)
        if self._tmp is not None:
            self._tmp.cleanup()


def summarize_reports(
    cfg: Mapping[str, Any],
    cluster: ProcessCluster,
    reports: Sequence[dict[str, Any] | None],
    wall: float,
    interrupted: bool = False,
) -> dict[str, Any]:
    """The summary ``p2pfl run`` prints; a node whose process died appears with status ``crashed``."""
    per_node: list[dict[str, Any]] = []
    histories: dict[str, list[Any]] = {}
    for node, report in zip(cluster.nodes, reports):
        if report is None:
            per_node.append(
                {
                    "node": node.node_id,
                    "status": "crashed",
                    "rounds_completed": 0,
                    "accuracy": None,
                    "loss": None,
                    "bytes_sent": 0,
                    "model_digest": None,
                }
            )
            histories[node.node_id] = []
        else:
            per_node.append(report["summary"])
            histories[node.node_id] = report["history"]
    return summarize_records(cfg, per_node, histories, wall, interrupted)


async def _run(cfg: Mapping[str, Any], plugins: PluginManager) -> dict[str, Any]:
    async with ProcessCluster(cfg, plugins) as cluster:
        await cluster.start()
        await cluster.connect(topology_edges(cfg, plugins))
        started = time.perf_counter()
        await cluster.start_learning()
        interrupted = False
        try:
            reports = await cluster.reports(float(cfg["training"]["timeout"]))
        except asyncio.CancelledError:  # Ctrl-C: stop learning everywhere and keep what was measured
            if (task := asyncio.current_task()) is not None:
                task.uncancel()
            interrupted = True
            await cluster.nodes[0].send("stop_learning")
            reports = await cluster.reports(60.0, ask=False)
        return summarize_reports(cfg, cluster, reports, time.perf_counter() - started, interrupted)


def launch_experiment(cfg: Mapping[str, Any], plugins: PluginManager) -> dict[str, Any]:
    """Run ``cfg`` with one OS process per node; returns the experiment summary."""
    from p2pfl_grpc.transport import GrpcTransport

    try:  # fail before spawning anything if the options (security included) are wrong; no I/O here
        GrpcTransport(node_id_for(cfg, 0), "", None, **cfg["network"]["protocol_options"])
    except (ValueError, TypeError) as exc:
        raise ConfigError([f"network.protocol_options: {exc}"]) from None
    try:
        summary = asyncio.run(_run(cfg, plugins))
    except NodeProcessError as exc:
        raise RuntimeError(f"the node processes failed: {exc}") from None
    return finish_experiment(cfg, plugins, summary)
