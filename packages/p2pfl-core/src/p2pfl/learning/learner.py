"""The learner interface (plugin kind ``learners``) and its training-callback mechanism.

A learner wraps one framework's model and one node's private data. Core calls it from a
worker thread (never the event loop), one call at a time, except :meth:`Learner.interrupt`,
which may be called from any thread while :meth:`Learner.fit` runs.

Training callbacks let an aggregator plugin add local-training terms (FedProx's proximal
term, SCAFFOLD's control-variate correction) on every framework without knowing it: a
callback returns a :class:`GradientCorrection`, a *linear* term added to each trainable
parameter's gradient at every step, which each learner implements in its own framework.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from p2pfl.parameters import Parameters

if TYPE_CHECKING:
    import datasets


@dataclass
class NodeData:
    """One node's private data: Hugging Face ``datasets.Dataset`` train and test splits.

    Attributes:
        train, test: the node's partitions.
        features: the input column (or columns, concatenated in this order).
        label: the target column (integer class ids).
        num_classes: number of classes of the label.
        batch_size: mini-batch size for training and evaluation.
        input_shape: shape of one example's input (e.g. ``(28, 28)`` or ``(784,)``), when known.
    """

    train: datasets.Dataset
    test: datasets.Dataset
    features: str | list[str]
    label: str
    num_classes: int
    batch_size: int = 32
    input_shape: tuple[int, ...] | None = None

    @property
    def feature_columns(self) -> list[str]:
        return [self.features] if isinstance(self.features, str) else list(self.features)

    def numpy(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of a split as numpy arrays: x float32 ``(n, *input_shape)``, y int64 ``(n,)``."""
        ds = self.train if split == "train" else self.test
        table = ds.with_format("numpy")
        # table[c][:] reads the column at once (plain table[c] iterates row by row in datasets 5)
        cols = [np.asarray(table[c][:], dtype=np.float32).reshape(len(ds), -1) for c in self.feature_columns]
        x = cols[0] if len(cols) == 1 else np.concatenate(cols, axis=1)
        if self.input_shape is not None:
            x = x.reshape((len(ds), *self.input_shape))
        y = np.asarray(table[self.label][:], dtype=np.int64)
        return x, y


@dataclass(frozen=True)
class GradientCorrection:
    """A term added to gradients during one local fit: ``g[name] += scale * w[name] + offset[name]``.

    Applied to trainable parameters only, at every optimizer step, before the optimizer's
    update. ``offset`` may omit names (zero offset). FedProx is ``scale=mu``,
    ``offset=-mu * w_global``; SCAFFOLD is ``scale=0``, ``offset=c - c_i``.
    """

    scale: float = 0.0
    offset: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __add__(self, other: GradientCorrection) -> GradientCorrection:
        offset = dict(self.offset)
        for name, value in other.offset.items():
            offset[name] = offset[name] + value if name in offset else value
        return GradientCorrection(self.scale + other.scale, offset)

    @property
    def is_zero(self) -> bool:
        return self.scale == 0.0 and not self.offset


@dataclass
class FitContext:
    """What a training callback knows when local training starts."""

    node_id: str
    round: int
    global_parameters: Parameters
    #: extras of the model the round started from (e.g. the global control variate).
    extras: dict[str, Parameters] = field(default_factory=dict)
    trainable: Sequence[str] = ()


@dataclass
class FitResult:
    """What :meth:`Learner.fit` returns."""

    num_samples: int
    num_steps: int
    learning_rate: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False


class TrainingCallback:
    """Hooks an aggregator plugin uses to take part in local training.

    Both methods run on the training thread. ``on_fit_end`` returns extras that travel with
    the node's update (e.g. SCAFFOLD's control-variate delta).
    """

    def on_fit_start(self, ctx: FitContext) -> GradientCorrection | None:
        return None

    def on_fit_end(self, ctx: FitContext, parameters: Parameters, result: FitResult) -> dict[str, Parameters]:
        return {}


class LearnerInterrupted(Exception):
    """Raised inside a framework's loop to abandon a fit after :meth:`Learner.interrupt`."""


class Learner(abc.ABC):
    """Wraps a framework model and a node's data.

    Subclasses are constructed as ``Learner(model, data, seed=..., **options)``, where
    ``options`` come from the experiment's ``model.options`` (e.g. ``lr``, ``optimizer``).
    """

    #: registered name, for messages
    name: ClassVar[str] = "learner"

    def __init__(self, model: Any, data: NodeData, *, seed: int = 0, **options: Any) -> None:
        self.model = model
        self.data = data
        self.seed = seed
        self.options = options

    @abc.abstractmethod
    def get_parameters(self) -> Parameters:
        """Every tensor of the model (buffers too), in a stable order, as numpy copies."""

    @abc.abstractmethod
    def set_parameters(self, parameters: Mapping[str, np.ndarray]) -> None:
        """Load parameters; raises :class:`p2pfl.parameters.ParameterMismatchError` naming what differs."""

    @abc.abstractmethod
    def fit(self, epochs: int, correction: GradientCorrection | None = None) -> FitResult:
        """Train locally for ``epochs`` over the node's train split, applying ``correction``."""

    @abc.abstractmethod
    def evaluate(self) -> dict[str, float]:
        """Metrics of the current model on the node's test split (at least ``loss`` and ``accuracy``)."""

    @abc.abstractmethod
    def interrupt(self) -> None:
        """Ask a running :meth:`fit` to return within one batch (thread-safe)."""

    def trainable_names(self) -> list[str]:
        """Names of the parameters an optimizer updates (others are buffers/statistics)."""
        return list(self.get_parameters())

    @property
    def num_samples(self) -> int:
        """Training examples held by this node."""
        return len(self.data.train)
