"""Time to send a model between two processes over the grpc transport, against raw TCP loopback.

Both measurements carry the same bytes (the message's wire encoding) from this process to a
receiver process on 127.0.0.1, in the same run:

* raw TCP: ``sendall`` of the bytes to a plain socket that reads them into one buffer and
  answers one byte;
* grpc: ``GrpcTransport.send`` of the message, which returns once the receiver has reassembled
  and decoded it and handed it to its node (the acknowledgement comes after that).

Prints JSON: the best of ``--repeats`` timings of each, throughputs, ``ratio`` (grpc
throughput / raw TCP throughput; the issue's target is >= 0.5), and the receiver's peak
memory growth in copies of the model (streaming keeps it near one).

Also the round overhead of 4 node processes (``network.processes: true``, the built-in
MNIST with the numpy learner and a tiny model) against the same experiment simulated in one
process on the memory transport (``--skip-rounds`` leaves it out).

Usage: python benchmarks/grpc_transfer.py [--size-mb 100] [--repeats 3] [--tls] [--chunk-size 1048576]
       [--skip-rounds]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from p2pfl.communication.transport import TransportOptions
from p2pfl.compression.codec import EncodedTensors
from p2pfl.wire.message import Message, ModelPayload

MB = 1 << 20
OPTIONS = TransportOptions(send_timeout=300, connect_timeout=60)


def _peak_rss_mb() -> float:
    """Peak resident memory of this process image (VmHWM; ru_maxrss would include the parent's, on Linux)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


# ------------------------------------------------------------------------------ receivers (child process)


def serve_tcp(size: int, repeats: int) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    _emit(address=f"127.0.0.1:{listener.getsockname()[1]}")
    for _ in range(repeats):
        conn, _ = listener.accept()
        buf = bytearray(size)
        view, got = memoryview(buf), 0
        while got < size:
            n = conn.recv_into(view[got:])
            if not n:
                break
            got += n
        conn.sendall(b"k")
        conn.close()


async def serve_grpc(security: dict[str, Any], chunk_size: int) -> None:
    from p2pfl_grpc.transport import GrpcTransport

    done = asyncio.Event()
    baseline = _peak_rss_mb()
    got: list[int] = []

    class Handler:
        def on_message(self, message: Message) -> None:
            got.append(message.model.nbytes if message.model else 0)  # the model is freed once delivered

        def on_peer_connected(self, peer_id: str, address: str) -> None:
            pass

        def on_peer_disconnected(self, peer_id: str, reason: str, failed: bool) -> None:
            done.set()

    transport = GrpcTransport("receiver", "127.0.0.1:0", OPTIONS, chunk_size=chunk_size, **security)
    _emit(address=await transport.start(Handler()))
    await done.wait()
    await transport.stop()
    if not got:
        raise RuntimeError("the receiver got no model")
    _emit(peak_growth_mb=_peak_rss_mb() - baseline)


# ------------------------------------------------------------------------------ sender (this process)


def _child(mode: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, __file__, mode, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"the {mode} receiver did not start")
    return proc, json.loads(line)["address"]


def time_tcp(data: bytes, repeats: int) -> float:
    proc, address = _child("--serve-tcp", str(len(data)), str(repeats))
    host, port = address.rsplit(":", 1)
    best = float("inf")
    try:
        for _ in range(repeats):
            with socket.create_connection((host, int(port))) as sock:
                start = time.perf_counter()
                sock.sendall(data)
                if sock.recv(1) != b"k":
                    raise RuntimeError("raw TCP receiver did not acknowledge")
                best = min(best, time.perf_counter() - start)
    finally:
        proc.wait(timeout=60)
    return best


async def time_grpc(message: Message, repeats: int, security: dict[str, Any], chunk_size: int) -> tuple[float, float]:
    from p2pfl_grpc.transport import GrpcTransport

    proc, address = _child("--serve-grpc", json.dumps(security), str(chunk_size))

    class Quiet:
        def on_message(self, message: Message) -> None:
            pass

        def on_peer_connected(self, peer_id: str, address: str) -> None:
            pass

        def on_peer_disconnected(self, peer_id: str, reason: str, failed: bool) -> None:
            pass

    sender = GrpcTransport("sender", "127.0.0.1:0", OPTIONS, chunk_size=chunk_size, **security)
    await sender.start(Quiet())
    best = float("inf")
    try:
        peer = await sender.connect(address)
        for _ in range(repeats):
            start = time.perf_counter()
            await sender.send(peer, message)
            best = min(best, time.perf_counter() - start)
    finally:
        await sender.stop()
        assert proc.stdout is not None
        stats = json.loads(proc.stdout.readline() or "{}")
        proc.wait(timeout=60)
    return best, float(stats.get("peak_growth_mb", float("nan")))


def _make_certs(folder: str) -> dict[str, Any]:
    from p2pfl_grpc.certs import create_certificates

    create_certificates(folder, {"sender": ["localhost", "127.0.0.1"], "receiver": ["localhost", "127.0.0.1"]})
    return {"certs_dir": folder}


def round_overhead(rounds: int = 5) -> dict[str, Any]:
    """Seconds per round of 4 nodes: one OS process each (grpc) vs one process (memory)."""
    from p2pfl.examples import mnist
    from p2pfl.experiment import run_experiment

    small = [
        "network.nodes=4",
        "network.topology=full",
        f"training.rounds={rounds}",
        "model.params.hidden=[16]",
        "output.dir=null",
    ]
    grpc = ["network.protocol=grpc", "network.protocol_options={insecure: true}", "network.processes=true"]
    processes = run_experiment(mnist(), [*small, *grpc])
    memory = run_experiment(mnist(), small)
    per_process = processes["wall_seconds"] / rounds
    per_memory = memory["wall_seconds"] / rounds
    return {
        "round_seconds_4_processes_grpc": round(per_process, 4),
        "round_seconds_4_in_process_memory": round(per_memory, 4),
        "round_overhead_ratio": round(per_process / per_memory, 2),
        "same_model": {p["model_digest"] for p in processes["per_node"]}
        == {p["model_digest"] for p in memory["per_node"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tls", action="store_true", help="mutual TLS instead of plaintext")
    parser.add_argument("--chunk-size", type=int, default=1 << 20)
    parser.add_argument("--skip-rounds", action="store_true", help="leave out the 4-process round overhead")
    args = parser.parse_args()
    from p2pfl_grpc.envelope import EnvelopeStream

    rng = np.random.default_rng(0)
    per_tensor = args.size_mb * MB // 4
    arrays = {f"layer{i}.weight": np.frombuffer(rng.bytes(per_tensor), dtype=np.float32) for i in range(4)}
    message = Message(kind="model", origin="sender", model=ModelPayload(EncodedTensors(arrays), 1, ("sender",)))
    data = EnvelopeStream(message).tobytes()  # exactly the bytes the grpc transport carries
    with tempfile.TemporaryDirectory() as folder:
        security = _make_certs(folder) if args.tls else {"insecure": True}
        tcp = time_tcp(data, args.repeats)
        grpc_seconds, growth = asyncio.run(time_grpc(message, args.repeats, security, args.chunk_size))
    size_mb = len(data) / MB
    result = {
        "benchmark": "grpc_transfer",
        "model_mb": round(size_mb, 2),
        "security": "mtls" if args.tls else "plaintext",
        "chunk_size": args.chunk_size,
        "repeats": args.repeats,
        "tcp_seconds": round(tcp, 4),
        "grpc_seconds": round(grpc_seconds, 4),
        "tcp_mb_per_s": round(size_mb / tcp, 1),
        "grpc_mb_per_s": round(size_mb / grpc_seconds, 1),
        "ratio": round(tcp / grpc_seconds, 3),
        "target_ratio": 0.5,
        "receiver_peak_growth_model_copies": round(growth / size_mb, 2),
    }
    if not args.skip_rounds:
        result.update(round_overhead())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-tcp":
        serve_tcp(int(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--serve-grpc":
        asyncio.run(serve_grpc(json.loads(sys.argv[2]), int(sys.argv[3])))
    else:
        main()
