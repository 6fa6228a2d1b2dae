"""Per-node settings. Each node owns one; nothing here is process-wide."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class NodeSettings:
    """Timeouts and limits of one node (all durations in seconds).

    Every wait in the runtime is event-driven; these deadlines are the last resort when an
    event never comes.
    """

    #: hop limit of gossiped messages (must exceed the network's diameter)
    gossip_ttl: int = 128
    #: message ids remembered by the duplicate filter
    dedup_capacity: int = 100_000
    #: how long a node waits for the initial model after learning starts
    start_timeout: float = 120.0
    #: last-resort deadline for the contributions of a round's live train set
    aggregation_timeout: float = 600.0
    #: how many rounds ahead early messages are kept (older ones are stale and dropped)
    max_rounds_ahead: int = 2
    #: seconds a single send may take
    send_timeout: float = 60.0
    #: run every in-memory message through the binary wire encoding
    encode_messages: bool = True
    #: evaluate the aggregated model on the node's test split after every round
    evaluate_every_round: bool = True

    def with_overrides(self, **changes: Any) -> NodeSettings:
        """A copy with ``changes``; unknown names raise ``TypeError`` listing the valid ones."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        return replace(self, **changes)
