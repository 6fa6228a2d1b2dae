"""Test kit for p2pfl plugin authors: pytest fixtures and conformance suites.

The fixtures (``p2pfl_plugin_manager``, ``p2pfl_register_plugin``, ``make_node_data``) are
available in every pytest run once ``p2pfl-core`` is installed (see
:mod:`p2pfl.testing.pytest_plugin`). The conformance suites are classes to subclass in a
test module::

    from p2pfl.testing import LearnerConformance

    class TestMyLearner(LearnerConformance):
        def make_learner(self, node_data, seed):
            return MyLearner(build_model(node_data), node_data, seed=seed)

Names are resolved lazily: pytest imports this package at start-up (through the plugin),
and that must stay cheap for every test session of the environment.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LearnerConformance": "p2pfl.testing.conformance.learner",
    "AggregatorConformance": "p2pfl.testing.conformance.aggregator",
    "ProtocolConformance": "p2pfl.testing.conformance.protocol",
    "CodecConformance": "p2pfl.testing.conformance.codec",
    "MemoryCluster": "p2pfl.testing.network",
    "RULES": "p2pfl.testing.conformance.rules",
    "synthetic_node_data": "p2pfl.testing.data",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
