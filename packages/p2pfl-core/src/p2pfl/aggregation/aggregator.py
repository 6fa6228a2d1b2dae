"""The aggregator interface (plugin kind ``aggregators``).

Every node of a round aggregates the same set of updates, presented in the same canonical
order (sorted by contributor ids), so a deterministic aggregator yields bitwise-identical
models on every node. Aggregators with state (server momentum...) therefore evolve the same
state on every node; :meth:`Aggregator.get_state` lets a late joiner catch up.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import ClassVar

from p2pfl.learning.learner import TrainingCallback
from p2pfl.parameters import Parameters, Update


class AggregationError(ValueError):
    """The updates cannot be aggregated (too few, zero samples, mismatched tensors...)."""


class Aggregator(abc.ABC):
    """Combines the updates of a round into one model.

    Subclasses take their parameters as keyword arguments (from the experiment's
    ``aggregator`` section) and validate them in ``__init__``.
    """

    #: registered name, for messages
    name: ClassVar[str] = "aggregator"
    #: True if aggregating disjoint partial aggregates equals aggregating all updates at once
    #: (FedAvg); the workflow only merges partial aggregates for such aggregators.
    supports_partial: ClassVar[bool] = False

    @property
    def min_updates(self) -> int:
        """The fewest updates this aggregator can work with (robust ones need more)."""
        return 1

    @abc.abstractmethod
    def aggregate(self, updates: Sequence[Update], global_parameters: Parameters | None = None) -> Update:
        """Aggregate ``updates`` (canonical order) into one update.

        ``global_parameters`` is the model the round started from (needed by server
        optimizers); ``None`` when unknown. The result's ``contributors`` is the union of the
        inputs', its ``num_samples`` their sum, and each tensor keeps its input dtype.
        """

    def check_count(self, updates: Sequence[Update]) -> None:
        if len(updates) < self.min_updates:
            raise AggregationError(f"{self.name} needs at least {self.min_updates} updates, got {len(updates)}")

    def training_callback(self) -> TrainingCallback | None:
        """A callback adding this aggregator's local-training terms (FedProx, SCAFFOLD), if any."""
        return None

    def get_state(self) -> dict[str, Parameters]:
        """State that must travel to a node joining late (server momentum...)."""
        return {}

    def set_state(self, state: dict[str, Parameters]) -> None:
        """Load state produced by :meth:`get_state` on another node."""
