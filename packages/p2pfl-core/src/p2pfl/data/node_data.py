"""From a whole dataset and a partitioner to one :class:`~p2pfl.learning.NodeData` per node.

Only the train split is given to the partitioner. Each node's test split then *follows*
its train split: for every class, the test samples of that class are dealt to the nodes in
proportion to how many training samples of that class each node holds (largest remainder,
seeded shuffle). A node's test set therefore has the same label distribution as its train
set, contains only labels it trains on, and its share of the test set matches its share
of the training set — whatever the partitioner (built-in or plugin).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from p2pfl.data.partitioners import allocate, class_indices
from p2pfl.data.spec import DatasetSpec
from p2pfl.learning.learner import NodeData

#: ``(labels, num_nodes, seed, **params) -> list of index arrays``
Partitioner = Callable[..., list[np.ndarray]]

#: mixed into the seed of the test split so it does not reuse the partitioner's random stream
TEST_STREAM = 1


def follow_partition(
    train_labels: np.ndarray, partitions: list[np.ndarray], test_labels: np.ndarray, seed: int
) -> list[np.ndarray]:
    """Test indices per node, following the label counts of each node's train partition."""
    num_classes = int(max(train_labels.max(initial=-1), test_labels.max(initial=-1))) + 1
    counts = np.stack([np.bincount(train_labels[part], minlength=num_classes) for part in partitions])
    rng = np.random.default_rng([seed, TEST_STREAM])
    return allocate(class_indices(test_labels, rng, num_classes), counts.astype(np.float64))


def partition(
    spec: DatasetSpec, partitioner: Partitioner, num_nodes: int, seed: int, **params: Any
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train_indices, test_indices)`` per node."""
    train_labels = spec.labels("train")
    parts = [np.asarray(p, dtype=np.int64) for p in partitioner(train_labels, num_nodes, seed, **params)]
    _check_partitions(parts, num_nodes, len(train_labels), getattr(partitioner, "__name__", repr(partitioner)))
    return list(zip(parts, follow_partition(train_labels, parts, spec.labels("test"), seed)))


def build_node_data(
    spec: DatasetSpec, partitioner: Partitioner, num_nodes: int, seed: int = 0, batch_size: int = 32, **params: Any
) -> list[NodeData]:
    """One :class:`NodeData` per node: ``partitioner(train_labels, num_nodes, seed, **params)``
    splits the train split; each node's test split follows (see the module docstring)."""
    return [
        NodeData(
            train=spec.train.select(train),
            test=spec.test.select(test),
            features=spec.features,
            label=spec.label,
            num_classes=spec.num_classes,
            batch_size=batch_size,
            input_shape=spec.input_shape,
        )
        for train, test in partition(spec, partitioner, num_nodes, seed, **params)
    ]


def _check_partitions(parts: list[np.ndarray], num_nodes: int, size: int, name: str) -> None:
    if len(parts) != num_nodes:
        raise ValueError(f"partitioner {name} returned {len(parts)} partitions for {num_nodes} nodes")
    for node, part in enumerate(parts):
        if part.size == 0:
            raise ValueError(f"partitioner {name} gave node {node} no training samples")
        if part.ndim != 1 or part.min() < 0 or part.max() >= size:
            raise ValueError(f"partitioner {name} gave node {node} indices outside [0, {size})")
