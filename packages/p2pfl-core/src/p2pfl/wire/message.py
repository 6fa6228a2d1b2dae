"""Messages exchanged between nodes (immutable once created)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from p2pfl.compression.codec import EncodedTensors
from p2pfl.parameters import Parameters

NO_ROUND = -1


@dataclass(frozen=True)
class ModelPayload:
    """A model (or update) as it travels: codec-encoded tensors plus FedAvg bookkeeping."""

    tensors: EncodedTensors
    num_samples: int
    contributors: tuple[str, ...]
    extras: dict[str, Parameters] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return self.tensors.nbytes + sum(a.nbytes for group in self.extras.values() for a in group.values())


@dataclass(frozen=True)
class Message:
    """One message. ``sender`` is the hop that sent this copy; ``origin`` created it.

    Gossip relays create a copy with :meth:`relayed` (same ``msg_id``, fewer ``ttl``), so the
    original is never modified after it was sent.
    """

    kind: str
    origin: str
    sender: str = ""
    round: int = NO_ROUND
    args: tuple[str, ...] = ()
    ttl: int = 0
    covered: frozenset[str] = frozenset()
    model: ModelPayload | None = None
    experiment: str = ""
    msg_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        if not self.sender:
            object.__setattr__(self, "sender", self.origin)

    def relayed(self, sender: str, covered: frozenset[str]) -> Message:
        """The copy a relay forwards: one hop fewer, new sender, wider covered set."""
        return replace(self, sender=sender, ttl=self.ttl - 1, covered=covered)

    def describe(self) -> str:
        r = f" r{self.round}" if self.round != NO_ROUND else ""
        return f"{self.kind}{r} from {self.origin} via {self.sender}"

    def with_fields(self, **changes: Any) -> Message:
        return replace(self, **changes)
