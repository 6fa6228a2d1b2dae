"""The learning plan every node of an experiment agrees on, and train-set selection."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


class PlanError(ValueError):
    """A ``start_learning`` message carried an invalid plan."""


@dataclass(frozen=True)
class LearningPlan:
    """What the initiator of an experiment broadcasts in ``start_learning``.

    ``members`` is the membership the train sets are drawn from; nodes joining later take
    part (they receive and evaluate every round's model) without being drawn.
    """

    id: str
    rounds: int
    epochs: int
    trainset_size: int
    seed: int
    members: tuple[str, ...]
    initiator: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LearningPlan:
        """Parse and validate a plan received from the network."""
        try:
            raw: Any = json.loads(text)
        except ValueError as exc:
            raise PlanError(f"plan is not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise PlanError("plan must be a JSON object")
        try:
            plan = cls(
                id=_typed(raw, "id", str),
                rounds=_typed(raw, "rounds", int),
                epochs=_typed(raw, "epochs", int),
                trainset_size=_typed(raw, "trainset_size", int),
                seed=_typed(raw, "seed", int),
                members=tuple(_typed(raw, "members", list)),
                initiator=_typed(raw, "initiator", str),
            )
        except KeyError as exc:
            raise PlanError(f"plan lacks {exc}") from None
        if not all(isinstance(m, str) for m in plan.members) or not plan.members:
            raise PlanError("plan members must be a non-empty list of node ids")
        if plan.rounds < 1 or plan.epochs < 0 or plan.trainset_size < 1:
            raise PlanError("plan needs rounds >= 1, epochs >= 0, trainset_size >= 1")
        return plan

    def trainset(self, round: int) -> list[str]:
        """The train set of ``round``: a seeded draw every node computes identically."""
        members = sorted(self.members)
        k = min(self.trainset_size, len(members))
        rng = np.random.default_rng([self.seed, round])
        return sorted(members[i] for i in rng.choice(len(members), size=k, replace=False))


def _typed(raw: dict[str, Any], key: str, kind: type) -> Any:
    value = raw[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PlanError(f"plan field {key!r} must be {kind.__name__}")
    return value
