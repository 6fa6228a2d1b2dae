"""A node's Hugging Face partitions as numpy mini-batches, shuffled with the node's seed."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from p2pfl.learning.learner import NodeData


class NumpyBatches:
    """One split of a :class:`~p2pfl.learning.learner.NodeData` held as numpy arrays.

    Labels are int32 (JAX's default integer width). Converted once: the partition does not
    change between rounds.
    """

    def __init__(self, data: NodeData, split: str) -> None:
        x, y = data.numpy(split)
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self.y = np.ascontiguousarray(y, dtype=np.int32)
        self.batch_size = int(data.batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {data.batch_size}")

    def __len__(self) -> int:
        return len(self.y)

    def shuffled(self, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One epoch in an order drawn from ``rng``; the last batch may be smaller."""
        order = rng.permutation(len(self))
        for start in range(0, len(self), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.x[idx], self.y[idx]

    def padded(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """In order, every batch padded to ``batch_size`` with a 0/1 mask (one compiled shape)."""
        for start in range(0, len(self), self.batch_size):
            x, y = self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]
            pad = self.batch_size - len(y)
            mask = np.ones(self.batch_size, np.float32)
            if pad:
                mask[len(y) :] = 0.0
                x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
                y = np.concatenate([y, np.zeros(pad, y.dtype)])
            yield x, y, mask
