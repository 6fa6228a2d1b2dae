"""Model builders for the numpy learner, referred to as ``"p2pfl.examples.models:mlp"`` in configs."""

from __future__ import annotations

import math
from collections.abc import Sequence

from p2pfl.learning.numpy_learner import NumpyModel


def mlp(input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (128,), seed: int = 0) -> NumpyModel:
    """A ReLU MLP on flattened inputs."""
    return NumpyModel(math.prod(input_shape), num_classes, hidden=hidden, seed=seed)


def softmax(input_shape: Sequence[int], num_classes: int, seed: int = 0) -> NumpyModel:
    """Softmax (multinomial logistic) regression on flattened inputs."""
    return NumpyModel(math.prod(input_shape), num_classes, hidden=(), seed=seed)
