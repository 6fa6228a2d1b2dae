"""Byzantine nodes for robustness experiments (the config's ``attack`` section).

A malicious node trains like the others but sends a corrupted update. The corruption wraps
its learner, so nodes, workflow and aggregators run unchanged — exactly what a robust
aggregator faces in the field::

    attack: {kind: scale, nodes: [5], factor: -10}     # node 5 sends base - 10 * its update
    attack: {kind: random, nodes: [2, 5], scale: 1.0}  # Gaussian noise of std 1 around the base
    attack: {kind: sign-flip, nodes: [0]}              # base - its update

Only float tensors are corrupted; integer buffers (counters) are left as trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from p2pfl.learning.learner import FitResult, GradientCorrection, Learner
from p2pfl.parameters import Parameters, copy_parameters, is_float

KINDS = ("scale", "random", "sign-flip")


class ByzantineLearner(Learner):
    """Delegates to ``inner``; the parameters read right after a fit are corrupted."""

    def __init__(self, inner: Learner, kind: str, factor: float = -10.0, scale: float = 1.0, seed: int = 0) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown attack kind {kind!r}; available: {', '.join(KINDS)}")
        super().__init__(inner.model, inner.data, seed=seed)
        self.inner, self.kind, self.factor, self.scale = inner, kind, float(factor), float(scale)
        self.rng = np.random.default_rng([seed, 0xBAD])
        self._base: Parameters | None = None
        self._poison = False

    def get_parameters(self) -> Parameters:
        params = self.inner.get_parameters()
        if not self._poison or self._base is None:
            return params
        self._poison = False
        return {n: self._corrupt(v, self._base[n]) if is_float(v) else v for n, v in params.items()}

    def _corrupt(self, value: np.ndarray, base: np.ndarray) -> np.ndarray:
        update = value.astype(np.float64) - base.astype(np.float64)
        if self.kind == "scale":
            bad = base + self.factor * update
        elif self.kind == "sign-flip":
            bad = base - update
        else:
            bad = base + self.rng.normal(0.0, self.scale, size=value.shape)
        return np.asarray(bad).astype(value.dtype)

    def set_parameters(self, parameters: Mapping[str, np.ndarray]) -> None:
        self.inner.set_parameters(parameters)
        self._base = copy_parameters(parameters)

    def fit(self, epochs: int, correction: GradientCorrection | None = None) -> FitResult:
        if self._base is None:
            self._base = self.inner.get_parameters()
        result = self.inner.fit(epochs, correction)
        self._poison = True
        return result

    def evaluate(self) -> dict[str, float]:
        return self.inner.evaluate()

    def interrupt(self) -> None:
        self.inner.interrupt()

    def trainable_names(self) -> list[str]:
        return self.inner.trainable_names()

    @property
    def num_samples(self) -> int:
        return self.inner.num_samples


def attack_options(attack: Mapping[str, Any] | None, index: int) -> dict[str, Any] | None:
    """The attack parameters for node ``index``, or None if it is honest."""
    if not attack or index not in attack.get("nodes", ()):
        return None
    return {k: v for k, v in attack.items() if k != "nodes"}
