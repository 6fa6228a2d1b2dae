"""Throughput of every registered aggregator against this machine's memory bandwidth.

    python benchmarks/aggregation.py                     # 10 models x 10M float32 parameters
    python benchmarks/aggregation.py --size 1000000 --only fedavg,median

Prints one JSON object. ``gbps`` is the bytes of parameters aggregated (every input
update's tensors, extras included) per second of ``aggregate()``; ``memory_bandwidth_gbps``
is a numpy copy of the same number of bytes measured in the same run, counted as bytes read
plus bytes written, so ``fraction_of_bandwidth`` is how close an aggregator comes to a
single streaming pass over its inputs. ``fedavg-blocked`` is the cache-blocked weighted mean
of ``p2pfl_aggregators.ops`` (bitwise equal to core's FedAvg, checked here), proposed as
core's implementation.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from p2pfl.aggregation import Aggregator
from p2pfl.parameters import Parameters, Update, parameters_equal
from p2pfl.plugins.manager import PluginManager

TARGET_FRACTION = 0.3


def make_round(models: int, size: int, seed: int = 0) -> tuple[list[Update], Parameters]:
    """``models`` updates of ``size`` float32 parameters in three tensors, plus the start model."""
    rng = np.random.default_rng(seed)
    shapes = {"layer1.weight": (size * 6 // 10,), "layer2.weight": (size * 3 // 10,)}
    shapes["head.weight"] = (size - sum(s[0] for s in shapes.values()),)
    start = {n: rng.standard_normal(s, dtype=np.float32) for n, s in shapes.items()}
    updates = []
    for i in range(models):
        params = {n: v + np.float32(0.01) * rng.standard_normal(v.shape, dtype=np.float32) for n, v in start.items()}
        # SCAFFOLD's control-variate deltas travel with the update; others ignore them
        extras = {"scaffold.delta_c": {n: np.zeros_like(v) for n, v in start.items()}}
        updates.append(Update(params, 100 + i, {f"node{i:02d}"}, 1, extras=extras))
    return updates, start


def best_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def memory_bandwidth(nbytes: int, repeat: int) -> float:
    """GB/s of ``np.copyto`` over ``nbytes``, counting bytes read plus bytes written."""
    src = np.ones(nbytes // 8, dtype=np.float64)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # fault the pages in before timing
    seconds, _ = best_time(lambda: np.copyto(dst, src), repeat)
    return 2 * src.nbytes / seconds / 1e9


class BlockedFedAvg(Aggregator):
    """FedAvg through the blocked kernel (now core's ``weighted_mean``) called directly."""

    name = "fedavg-blocked"
    supports_partial = True

    def aggregate(self, updates, global_parameters=None):  # type: ignore[no-untyped-def]
        from p2pfl_aggregators import ops

        weights = [float(u.num_samples) for u in updates]
        params = {n: ops.weighted_mean([u.parameters[n] for u in updates], weights) for n in updates[0].parameters}
        return Update(
            params,
            sum(u.num_samples for u in updates),
            frozenset().union(*(u.contributors for u in updates)),
            max(u.round for u in updates),
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=10, help="updates per aggregation (default 10)")
    parser.add_argument("--size", type=int, default=10_000_000, help="float32 parameters per model (default 10M)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per aggregator; the best counts")
    parser.add_argument("--only", default="", help="comma-separated aggregator names (default: all)")
    args = parser.parse_args(argv)

    registry = PluginManager().registry("aggregators")
    names = [*registry.names(), "fedavg-blocked"]
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"unknown aggregator(s) {unknown}; available: {', '.join(names)}")
        names = wanted

    updates, start = make_round(args.models, args.size)
    param_bytes = sum(v.nbytes for u in updates for v in u.parameters.values())
    bandwidth = memory_bandwidth(param_bytes, args.repeat)
    results: dict[str, dict[str, Any]] = {}
    outputs: dict[str, Parameters] = {}
    for name in names:
        cls = BlockedFedAvg if name == "fedavg-blocked" else registry.load(name)
        aggregator = cls()
        if len(updates) < aggregator.min_updates:
            results[name] = {"skipped": f"needs {aggregator.min_updates} updates"}
            continue
        # fresh state every run: a server optimizer's first round, each time
        seconds, out = best_time(lambda cls=cls: cls().aggregate(updates, start), args.repeat)
        nbytes = param_bytes + (
            sum(v.nbytes for u in updates for v in u.extras["scaffold.delta_c"].values()) if name == "scaffold" else 0
        )
        gbps = nbytes / seconds / 1e9
        results[name] = {
            "seconds": round(seconds, 4),
            "gbps": round(gbps, 3),
            "fraction_of_bandwidth": round(gbps / bandwidth, 3),
        }
        outputs[name] = out.parameters
        print(f"{name}: {seconds:.3f}s", file=sys.stderr)

    summary: dict[str, Any] = {
        "models": args.models,
        "params_per_model": args.size,
        "input_gb": round(param_bytes / 1e9, 3),
        "machine": platform.machine(),
        "numpy": np.__version__,
        "memory_bandwidth_gbps": round(bandwidth, 3),
        "target_fedavg_fraction": TARGET_FRACTION,
        "aggregators": results,
    }
    if "fedavg" in outputs and "fedavg-blocked" in outputs:
        summary["fedavg_blocked_equals_core_bitwise"] = parameters_equal(outputs["fedavg"], outputs["fedavg-blocked"])
    for name in ("fedavg", "fedavg-blocked"):
        if name in results and "fraction_of_bandwidth" in results[name]:
            summary[f"{name}_meets_target"] = results[name]["fraction_of_bandwidth"] >= TARGET_FRACTION
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
