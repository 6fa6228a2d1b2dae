"""What a dataset plugin returns: whole train and test splits plus how to read them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import datasets


@dataclass
class DatasetSpec:
    """A dataset before it is split between nodes (what callables of kind ``datasets`` return).

    Attributes:
        train, test: Hugging Face ``datasets.Dataset`` splits.
        features: the input column (or columns, concatenated in this order); numeric values,
            or fixed-length lists of them (images are already converted to float32 in [0, 1]).
        label: the target column, integer class ids in ``[0, num_classes)``.
        num_classes: number of classes.
        input_shape: shape of one example's input (e.g. ``(28, 28)``), or ``None`` if unknown.
        name: a short description for logs.
    """

    train: datasets.Dataset
    test: datasets.Dataset
    features: str | list[str]
    label: str
    num_classes: int
    input_shape: tuple[int, ...] | None = None
    name: str = ""

    def labels(self, split: str = "train") -> np.ndarray:
        """The label column of ``split`` (``"train"`` or ``"test"``) as an int64 array."""
        ds = self.train if split == "train" else self.test
        return column(ds, self.label).astype(np.int64).reshape(len(ds))


def column(ds: datasets.Dataset, name: str) -> np.ndarray:
    """One column as a numpy array."""
    # ``[:]`` matters: datasets >= 4 returns a lazy Column that np.asarray reads row by row (10x slower)
    return np.asarray(ds.with_format("numpy")[name][:])
