"""Nodes in separate OS processes: a model exchanged, a clean leave, kill -9, keepalive under load."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from grpc_testkit import grpc_certs, start_node  # noqa: F401

from p2pfl.communication.transport import PeerUnavailableError, TransportOptions
from p2pfl.compression.codec import EncodedTensors
from p2pfl.parameters import parameters_equal
from p2pfl.wire.message import Message, ModelPayload
from p2pfl_grpc.transport import GrpcTransport

pytestmark = pytest.mark.framework

PEER = Path(__file__).with_name("grpc_peer.py")
DEADLINE = 60.0
OPTIONS = TransportOptions(send_timeout=120, connect_timeout=30)


class Child:
    """A grpc_peer.py process and its JSON event lines."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc, self.log = proc, log

    @classmethod
    async def start(cls, tmp_path: Path, *args: str) -> Child:
        log = tmp_path / "child.stderr"
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(PEER), *args, stdout=asyncio.subprocess.PIPE, stderr=err
            )
        return cls(proc, log)

    async def expect(self, event: str) -> dict[str, Any]:
        """The next line with this event (earlier ones are skipped)."""
        assert self.proc.stdout is not None
        while True:
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), DEADLINE)
            except asyncio.TimeoutError:
                raise AssertionError(
                    f"no {event!r} from the child; its stderr:\n{self.log.read_text()[-3000:]}"
                ) from None
            if not line:
                raise AssertionError(f"child ended before {event!r}; its stderr:\n{self.log.read_text()[-3000:]}")
            record = json.loads(line)
            if record["event"] == event:
                return record

    async def exit_code(self) -> int:
        return await asyncio.wait_for(self.proc.wait(), DEADLINE)

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()  # SIGKILL: no goodbye, no cleanup

    async def close(self) -> None:
        """Kill if still running, and reap (so the loop closes with no process left behind)."""
        self.kill()
        await asyncio.wait_for(self.proc.wait(), DEADLINE)


def _model(origin: str) -> Message:
    rng = np.random.default_rng(5)
    arrays = {
        "conv.weight": rng.normal(size=(64, 3, 5, 5)).astype(np.float32),
        "fc.weight": rng.normal(size=(1000, 2000)).astype(np.float32),  # 8 MB: several chunks
        "fc.bias": rng.normal(size=(1000,)).astype(np.float64),
        "bn.count": np.array(12, dtype=np.int64),
    }
    return Message(kind="model", origin=origin, model=ModelPayload(EncodedTensors(arrays), 60, (origin,)))


@pytest.mark.parametrize("secure", [False, True], ids=["plaintext", "mtls"])
def test_two_processes_exchange_a_model_and_leave_cleanly(secure: bool, grpc_certs, tmp_path) -> None:  # noqa: F811
    from grpc_peer import digest

    certs = str(grpc_certs["main"])
    security: dict[str, Any] = {"certs_dir": certs} if secure else {"insecure": True}

    async def scenario() -> None:
        child = await Child.start(
            tmp_path, "--id", "node-1", "--exit-on-leave", *(["--certs", certs] if secure else [])
        )
        a = await start_node(GrpcTransport("node-0", "127.0.0.1:0", OPTIONS, **security))
        try:
            address = (await child.expect("listening"))["address"]
            assert await a.transport.connect(address) == "node-1"
            assert (await child.expect("connected"))["peer"] == "node-0"
            sent = _model("node-0")
            await a.transport.send("node-1", sent)
            await a.events.wait_for(
                lambda: {m.kind for m in a.events.messages} >= {"digest", "echo"},
                "digest and echo from the child",
                DEADLINE,
            )
            replies = {m.kind: m for m in a.events.messages}
            assert sent.model is not None
            assert replies["digest"].args == (digest(sent.model.tensors.arrays),)  # what the child received
            echo = replies["echo"].model
            assert echo is not None and parameters_equal(echo.tensors.arrays, sent.model.tensors.arrays)
            await a.transport.stop()
            departure = await child.expect("disconnected")
            assert departure["peer"] == "node-0" and departure["failed"] is False
            assert await child.exit_code() == 0
        finally:
            await child.close()
            await a.transport.stop()

    asyncio.run(scenario())


def test_kill_9_of_a_peer_process_is_seen_as_a_failure(tmp_path) -> None:
    async def scenario() -> None:
        child = await Child.start(tmp_path, "--id", "node-1")
        a = await start_node(GrpcTransport("node-0", "127.0.0.1:0", OPTIONS, insecure=True))
        try:
            await a.transport.connect((await child.expect("listening"))["address"])
            child.kill()
            await a.events.wait_for(lambda: a.events.disconnected, "the failure of node-1", DEADLINE)
            peer, reason, failed = a.events.disconnected[0]
            assert (peer, failed) == ("node-1", True), reason
            assert a.transport.neighbors() == []
            with pytest.raises(PeerUnavailableError):
                await a.transport.send("node-1", Message(kind="late", origin="node-0"))
        finally:
            await child.close()
            await a.transport.stop()

    asyncio.run(scenario())


def test_a_peer_whose_loop_is_busy_for_many_keepalive_periods_stays_connected(tmp_path) -> None:
    # keepalive every 0.2 s, a ping unanswered for 0.4 s means failure; the child then holds its
    # event loop for 3 s (a training step that never yields). gRPC answers pings off the Python loop.
    async def scenario() -> None:
        child = await Child.start(tmp_path, "--id", "node-1", "--keepalive", "0.2")
        a = await start_node(
            GrpcTransport("node-0", "127.0.0.1:0", OPTIONS, insecure=True, keepalive_time=0.2, keepalive_timeout=0.4)
        )
        try:
            await a.transport.connect((await child.expect("listening"))["address"])
            await a.transport.send("node-1", Message(kind="train", origin="node-0", args=("3",)))
            await a.events.wait_for(lambda: a.events.messages, "the end of the child's training", DEADLINE)
            assert [m.kind for m in a.events.messages] == ["trained"]
            assert a.events.disconnected == [] and a.transport.neighbors() == ["node-1"]
            await a.transport.send("node-1", Message(kind="quit", origin="node-0"))
            assert await child.exit_code() == 0
        finally:
            await child.close()
            await a.transport.stop()

    asyncio.run(scenario())
