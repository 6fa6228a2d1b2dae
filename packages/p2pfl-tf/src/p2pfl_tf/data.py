"""A node's Hugging Face partitions as ``tf.data`` pipelines.

Columns are taken by name from :class:`~p2pfl.learning.NodeData` (``features`` in the
order given, then ``label``), never by position: :meth:`NodeData.numpy` reads them into
float32 inputs shaped ``(n, *input_shape)`` and int64 labels once, and the pipelines slice
those arrays. Training pipelines are shuffled with an explicit seed, so a node's batch order
depends on its seed only, not on TensorFlow's global seed state.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from p2pfl.learning.learner import NodeData
from p2pfl_tf._tfenv import tf


def node_arrays(data: NodeData, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of ``split``: float32 inputs ``(n, *input_shape)`` and int64 labels ``(n,)``."""
    x, y = data.numpy(split)
    if len(y) and (y.min() < 0 or y.max() >= data.num_classes):
        raise ValueError(
            f"{split} labels of column {data.label!r} must lie in [0, {data.num_classes}), got [{y.min()}, {y.max()}]"
        )
    return x, y


def shuffle_seed(seed: int, fit_index: int) -> int:
    """The shuffle seed of a node's ``fit_index``-th fit: different every round, fixed by ``seed``."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, fit_index]).generate_state(1, np.uint32)[0])


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    *,
    seed: int | None = None,
    buffer_size: int | None = None,
) -> Any:
    """A batched ``tf.data.Dataset`` of ``(x, y)``; shuffled with ``seed`` unless it is ``None``.

    With a seed, every pass (epoch) over the dataset draws a new order, and the sequence of
    orders is fixed by the seed. ``buffer_size`` defaults to the whole split (a uniform shuffle).
    """
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if seed is not None and len(y) > 1:
        buffer = len(y) if buffer_size is None else max(1, min(int(buffer_size), len(y)))
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(2)
