"""Workflows (plugin kind ``stages``): what a node does, round after round, while learning.

A :class:`Workflow` is given a running node and a :class:`~p2pfl.workflow.plan.LearningPlan`
and drives the rounds. The default one is a list of :class:`Stage` objects run in order
every round over a shared :class:`RoundContext`; a plugin can register a workflow with other
stages (e.g. asynchronous gossip learning) under a name of its own.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from p2pfl.parameters import Parameters, Update
from p2pfl.workflow.plan import LearningPlan

if TYPE_CHECKING:
    from p2pfl.node.node import Node


@dataclass
class RoundContext:
    """State shared by the stages of one round on one node."""

    node: Node
    plan: LearningPlan
    round: int
    #: the model every node holds at the start of the round (the base of delta codecs)
    base: Parameters
    trainset: list[str] = field(default_factory=list)
    #: this node's decoded updates of the round, by contributor, once the exchange is done
    updates: list[Update] = field(default_factory=list)
    aggregated: Update | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def is_trainer(self) -> bool:
        return self.node.id in self.trainset


class Stage(abc.ABC):
    """One step of a round. Stages communicate through the :class:`RoundContext`."""

    name: ClassVar[str] = "stage"

    @abc.abstractmethod
    async def run(self, ctx: RoundContext) -> None:
        """Do this stage's work; raise to abort the experiment on this node."""


class Workflow(abc.ABC):
    """Drives a node through a learning plan."""

    name: ClassVar[str] = "workflow"

    @abc.abstractmethod
    async def run(self, node: Node, plan: LearningPlan, first_round: int) -> None:
        """Run rounds ``first_round..plan.rounds``; the node's model is the round's base."""
