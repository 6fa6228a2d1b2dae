"""Hook implementations of p2pfl-example (the module named by its ``p2pfl`` entry point).

The components are registered as lazy ``"module:attr"`` targets, so ``p2pfl plugins list``
imports nothing but this module. The observer hook imports its (light) module when first
called.
"""

from __future__ import annotations

from typing import Any

from p2pfl import hookimpl


@hookimpl
def p2pfl_register_aggregators(register: Any) -> None:
    register(
        "norm-clipped-mean",
        "p2pfl_example.aggregator:NormClippedMean",
        description="sample-weighted mean of updates clipped to an L2 norm (default: the median norm)",
    )


@hookimpl
def p2pfl_register_compressors(register: Any) -> None:
    register("float16", "p2pfl_example.codec:Float16", description="updates cast to float16 (lossy, half the bytes)")


@hookimpl
def p2pfl_round_finished(node_id: str, round: int, metrics: dict[str, Any]) -> None:
    from p2pfl_example.observer import write_round

    write_round(node_id, round, metrics)
