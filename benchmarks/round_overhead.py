"""Protocol overhead per round of the in-memory runtime, as JSON (issue 3).

The numpy learner trains on two samples for zero epochs, so a round's time is the runtime's
own overhead: train-set draw, encoding, gossip, aggregation, evaluation. For each N and
graph it reports seconds per round, messages and bytes per round, peak threads and RSS.

Run: python benchmarks/round_overhead.py [--sizes 4 16 64 256] [--rounds 3]
Targets: under 0.1 s per round at N = 16; growth no faster than linear in N on rings.
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time

import psutil

from p2pfl.hookspecs import hookimpl
from p2pfl.plugins import PluginManager
from p2pfl.testing.data import synthetic_node_data
from p2pfl.testing.network import MemoryCluster, full_edges, ring_edges


class ThreadProbe:
    def __init__(self) -> None:
        self.peak = 0

    @hookimpl
    def p2pfl_round_finished(self) -> None:
        self.peak = max(self.peak, threading.active_count())


def measure(n: int, graph: str, rounds: int) -> dict[str, object]:
    probe, plugins = ThreadProbe(), PluginManager(discover=False)
    plugins.register(probe, name="probe")
    edges = full_edges(n) if graph == "full" else ring_edges(n)
    data = lambda i: synthetic_node_data(num_train=2, num_test=2, seed=i)  # noqa: E731
    with MemoryCluster(n, edges, data=data, plugins=plugins) as cluster:
        messages0, bytes0 = cluster.network.messages_sent, cluster.network.bytes_sent
        start = time.perf_counter()
        assert cluster.learn(rounds=rounds, epochs=0, timeout=3600)
        elapsed = time.perf_counter() - start
        assert cluster.agree()
        return {
            "nodes": n,
            "graph": graph,
            "seconds_per_round": round(elapsed / rounds, 5),
            "messages_per_round": (cluster.network.messages_sent - messages0) / rounds,
            "bytes_per_round": (cluster.network.bytes_sent - bytes0) / rounds,
            "peak_threads": probe.peak,
            "rss_mb": round(psutil.Process().memory_info().rss / 1e6, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 16, 64, 256])
    parser.add_argument("--graphs", nargs="+", default=["full", "ring"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = [measure(n, g, args.rounds) for g in args.graphs for n in args.sizes if not (g == "full" and n > 64)]
    ring = {r["nodes"]: r["seconds_per_round"] for r in results if r["graph"] == "ring"}
    sizes = sorted(ring)
    growth = [round((ring[b] / ring[a]) / (b / a), 3) for a, b in itertools.pairwise(sizes)]
    print(
        json.dumps(
            {
                "results": results,
                "ring_growth_vs_linear": growth,
                "note": "full graphs above 64 nodes are skipped (O(N^2) edges)",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
