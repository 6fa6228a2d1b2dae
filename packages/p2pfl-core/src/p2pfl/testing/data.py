"""Small synthetic datasets for tests: Gaussian blobs, one per class.

They are tiny (a few hundred rows), built in milliseconds, and easy enough that any
working learner reaches high accuracy in a few epochs, which is what conformance checks
need: a learner that does not learn on them is broken, not unlucky.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from p2pfl.learning.learner import NodeData


def _sample(means: np.ndarray, num_samples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    num_classes, num_features = means.shape
    y = rng.permutation(np.arange(num_samples) % num_classes).astype(np.int64)
    x = means[y] + rng.normal(0.0, 1.0, size=(num_samples, num_features))
    return x.astype(np.float32), y


def synthetic_node_data(
    num_train: int = 120,
    num_test: int = 60,
    num_features: int = 8,
    num_classes: int = 3,
    *,
    seed: int = 0,
    batch_size: int = 16,
    separation: float = 3.0,
    input_shape: Sequence[int] | None = None,
) -> NodeData:
    """A :class:`~p2pfl.learning.NodeData` of Gaussian blobs (Hugging Face ``datasets`` splits).

    Args:
        num_train, num_test: rows of each split.
        num_features: length of the ``"x"`` feature column (a fixed-length float32 list).
        num_classes: classes of the integer ``"label"`` column (balanced).
        seed: draws the class means and both splits; the same seed gives the same data.
        batch_size: the ``NodeData.batch_size`` learners use.
        separation: scale of the class means (noise has unit variance); 3 is easy.
        input_shape: ``NodeData.input_shape`` (default ``(num_features,)``); its product
            must equal ``num_features``, e.g. ``(2, 4)`` for a model expecting 2-d inputs.
    """
    import datasets

    from p2pfl.learning.learner import NodeData

    shape = (num_features,) if input_shape is None else tuple(int(d) for d in input_shape)
    if int(np.prod(shape)) != num_features:
        raise ValueError(f"input_shape {shape} does not hold num_features={num_features} values")
    means = np.random.default_rng(seed).normal(0.0, separation, size=(num_classes, num_features))
    # Separate child streams so changing num_test does not change the train split.
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    features = datasets.Features(
        {"x": datasets.Sequence(datasets.Value("float32"), length=num_features), "label": datasets.Value("int64")}
    )

    def split(num: int, rng: np.random.Generator) -> datasets.Dataset:
        x, y = _sample(means, num, rng)
        return datasets.Dataset.from_dict({"x": x, "label": y}, features=features)

    return NodeData(
        train=split(num_train, train_rng),
        test=split(num_test, test_rng),
        features="x",
        label="label",
        num_classes=num_classes,
        batch_size=batch_size,
        input_shape=shape,
    )
