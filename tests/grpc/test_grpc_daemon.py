"""``p2pfl node``: nodes as long-lived processes, learning started by a command against one of them."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from grpc_testkit import grpc_certs  # noqa: F401

from p2pfl_grpc.control import ControlError, send_command

pytestmark = pytest.mark.framework

DEADLINE = 120.0
COMMON = ["--set", "network.nodes=3", "--set", "model.params.hidden=[32]", "--json"]


class Daemon:
    """``python -m p2pfl node run ...`` and its JSON event lines."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc, self.log = proc, log

    @classmethod
    async def start(cls, tmp_path: Path, index: int, *args: str) -> Daemon:
        log = tmp_path / f"daemon-{index}.log"
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "p2pfl",
                "node",
                "run",
                "mnist",
                "--index",
                str(index),
                *COMMON,
                *args,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        return cls(proc, log)

    async def expect(self, event: str, **match: Any) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), DEADLINE)
            except asyncio.TimeoutError:
                raise AssertionError(f"no {event} {match}; stderr:\n{self.log.read_text()[-3000:]}") from None
            if not line:
                raise AssertionError(f"exited before {event} {match}; stderr:\n{self.log.read_text()[-3000:]}")
            record = json.loads(line)
            if record["event"] == event and all(record.get(k) == v for k, v in match.items()):
                return record

    async def terminate(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), DEADLINE)


def test_three_daemons_with_mutual_tls_learn_when_told(grpc_certs, tmp_path) -> None:  # noqa: F811
    certs = str(grpc_certs["main"])

    async def scenario() -> None:
        daemons: list[Daemon] = []
        try:
            first = await Daemon.start(tmp_path, 0, "--certs-dir", certs)
            daemons.append(first)
            address = (await first.expect("listening"))["address"]
            for i in (1, 2):  # each joins through the first
                daemons.append(await Daemon.start(tmp_path, i, "--certs-dir", certs, "--peer", address))
            for d in daemons[1:]:
                await d.expect("ready")
            started = await send_command(address, "start_learning", {"rounds": 2}, certs_dir=certs, as_name="admin")
            assert started["members"] == ["node-0", "node-1", "node-2"]
            for d in daemons:
                await d.expect("round", round=2)
            status = await send_command(address, "status", certs_dir=certs, as_name="admin")
            assert status["experiment"] == started["experiment"] and status["round"] == 2
            # a certificate of another CA cannot command the node
            with pytest.raises(ControlError):
                await send_command(address, "status", certs_dir=str(grpc_certs["other"]), as_name="node-1")
            with pytest.raises(ControlError, match="unknown command"):
                await send_command(address, "reboot", certs_dir=certs, as_name="admin")
            for d in daemons:
                assert await d.terminate() == 0
                await d.expect("stopped")
        finally:
            for d in daemons:
                if d.proc.returncode is None:
                    d.proc.kill()
                    await d.proc.wait()

    asyncio.run(scenario())


def test_a_daemon_without_control_refuses_commands(tmp_path) -> None:
    async def scenario() -> None:
        daemon = await Daemon.start(tmp_path, 0, "--insecure", "--no-control")
        try:
            address = (await daemon.expect("listening"))["address"]
            with pytest.raises(ControlError, match="UNIMPLEMENTED"):
                await send_command(address, "status")
            assert await daemon.terminate() == 0
        finally:
            if daemon.proc.returncode is None:
                daemon.proc.kill()
                await daemon.proc.wait()

    asyncio.run(scenario())
