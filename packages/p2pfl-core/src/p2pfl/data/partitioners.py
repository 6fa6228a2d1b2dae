"""Partitioners (plugin kind ``partitioners``): how a dataset's samples are split between nodes.

A partitioner is ``(labels, num_nodes, seed, **params) -> list[np.ndarray]``: given the
label of every training sample, it returns, for each node, the sorted indices of that
node's samples. Partitions are disjoint. The same arguments always give the same result
(all randomness comes from ``np.random.default_rng(seed)``).

The helpers below (:func:`apportion`, :func:`class_indices`, :func:`allocate`) are shared
with :mod:`p2pfl.data.node_data`, which makes each node's test split follow its train split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# --------------------------------------------------------------------------- shared helpers


def apportion(total: int, weights: Sequence[float] | np.ndarray) -> np.ndarray:
    """Split ``total`` items into integer sizes proportional to ``weights`` (largest remainder).

    The sizes sum to ``total`` (or are all zero when every weight is zero); each differs
    from its exact share by less than one; ties go to the lower index.
    """
    w = np.asarray(weights, dtype=np.float64)
    if total <= 0 or w.sum() <= 0:
        return np.zeros(len(w), dtype=np.int64)
    quota = w / w.sum() * total
    sizes = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - sizes), kind="stable")
    sizes[order[: total - int(sizes.sum())]] += 1
    return sizes


def class_indices(labels: np.ndarray, rng: np.random.Generator, num_classes: int | None = None) -> list[np.ndarray]:
    """For each class id ``0..num_classes-1``, the indices of its samples in a seeded random order."""
    k = int(labels.max()) + 1 if num_classes is None else num_classes
    shuffled = rng.permutation(len(labels))
    by_label = shuffled[np.argsort(labels[shuffled], kind="stable")]
    return np.split(by_label, np.cumsum(np.bincount(labels, minlength=k))[:-1])


def allocate(per_class: list[np.ndarray], weights: np.ndarray) -> list[np.ndarray]:
    """Give node ``i`` a share of class ``c`` proportional to ``weights[i, c]``; return sorted indices per node."""
    num_nodes = weights.shape[0]
    parts: list[list[np.ndarray]] = [[] for _ in range(num_nodes)]
    for c, indices in enumerate(per_class):
        # the chunk after the last cut is what no node takes (a class nobody is weighted for)
        chunks = np.split(indices, np.cumsum(apportion(len(indices), weights[:, c])))[:-1]
        for node, chunk in enumerate(chunks):
            parts[node].append(chunk)
    return [_sorted(chunks) for chunks in parts]


def _sorted(chunks: list[np.ndarray]) -> np.ndarray:
    return np.sort(np.concatenate(chunks)).astype(np.int64) if chunks else np.zeros(0, dtype=np.int64)


def _check(labels: np.ndarray, num_nodes: int, min_per_node: int = 1) -> np.ndarray:
    """Validate the common arguments; return the labels as a 1-D int64 array."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 1-D array of integer class ids, got {labels.dtype} of shape {labels.shape}")
    if labels.size and labels.min() < 0:
        raise ValueError("labels must be non-negative class ids")
    if num_nodes < 1:
        raise ValueError(f"num_nodes must be at least 1, got {num_nodes}")
    if len(labels) < num_nodes * min_per_node:
        raise ValueError(f"{len(labels)} samples cannot give {num_nodes} nodes {min_per_node} sample(s) each")
    return labels.astype(np.int64)


# --------------------------------------------------------------------------- partitioners


def iid(labels: np.ndarray, num_nodes: int, seed: int) -> list[np.ndarray]:
    """Uniformly random partitions of equal size (sizes differ by at most one)."""
    labels = _check(labels, num_nodes)
    shuffled = np.random.default_rng(seed).permutation(len(labels))
    return [np.sort(part) for part in np.array_split(shuffled, num_nodes)]


def dirichlet(
    labels: np.ndarray, num_nodes: int, seed: int, alpha: float = 0.5, min_size: int = 10, max_attempts: int = 100
) -> list[np.ndarray]:
    """Label-distribution skew: each class is split between nodes by proportions drawn from Dir(alpha).

    Small ``alpha`` (0.1) gives nodes dominated by few classes; large ``alpha`` (100)
    approaches IID. All proportions are redrawn until every node holds at least
    ``min_size`` samples, at most ``max_attempts`` times.
    """
    labels = _check(labels, num_nodes, min_size)
    if alpha <= 0:
        raise ValueError(f"dirichlet: alpha must be > 0, got {alpha}")
    rng = np.random.default_rng(seed)
    per_class = class_indices(labels, rng)
    smallest = 0
    for _ in range(max_attempts):
        weights = rng.dirichlet(np.full(num_nodes, float(alpha)), size=len(per_class)).T
        parts = allocate(per_class, weights)
        smallest = min(len(p) for p in parts)
        if smallest >= min_size:
            return parts
    raise ValueError(
        f"dirichlet: no partition gave every node at least min_size={min_size} samples in {max_attempts} "
        f"attempts (alpha={alpha}, smallest node got {smallest}); lower min_size or raise alpha"
    )


def shards(labels: np.ndarray, num_nodes: int, seed: int, shards_per_node: int = 2) -> list[np.ndarray]:
    """Pathological non-IID (McMahan et al.): sort by label, cut ``num_nodes * shards_per_node``
    equal shards, and give each node ``shards_per_node`` random shards (so about that many labels)."""
    if shards_per_node < 1:
        raise ValueError(f"shards: shards_per_node must be >= 1, got {shards_per_node}")
    labels = _check(labels, num_nodes, shards_per_node)
    rng = np.random.default_rng(seed)
    by_label = np.concatenate(class_indices(labels, rng))
    pieces = np.array_split(by_label, num_nodes * shards_per_node)
    owners = rng.permutation(len(pieces)).reshape(num_nodes, shards_per_node)
    return [_sorted([pieces[s] for s in row]) for row in owners]


def label_skew(labels: np.ndarray, num_nodes: int, seed: int, labels_per_node: int = 2) -> list[np.ndarray]:
    """Each node holds exactly ``labels_per_node`` classes; each class is split evenly among its holders.

    Node ``i`` always holds class ``i mod K`` (so every class is used when there are at
    least ``K`` nodes); its other classes are drawn at random. Classes that no node holds
    are left out.
    """
    labels = _check(labels, num_nodes)
    rng = np.random.default_rng(seed)
    per_class = class_indices(labels, rng)
    present = np.flatnonzero([len(idx) for idx in per_class])
    if not 1 <= labels_per_node <= len(present):
        raise ValueError(f"label-skew: labels_per_node must be in [1, {len(present)}], got {labels_per_node}")
    holds = np.zeros((num_nodes, len(per_class)))
    for node in range(num_nodes):
        first = present[node % len(present)]
        others = rng.choice(present[present != first], labels_per_node - 1, replace=False)
        holds[node, [first, *others]] = 1.0
    return allocate(per_class, holds)


def quantity_skew(
    labels: np.ndarray, num_nodes: int, seed: int, exponent: float = 1.0, min_size: int = 1
) -> list[np.ndarray]:
    """Power-law sizes with IID labels: the node of rank ``r`` (1 = largest) gets a share
    proportional to ``r ** -exponent`` on top of ``min_size``; ranks are assigned at random."""
    labels = _check(labels, num_nodes, min_size)
    if exponent < 0:
        raise ValueError(f"quantity-skew: exponent must be >= 0, got {exponent}")
    rng = np.random.default_rng(seed)
    ranks = rng.permutation(num_nodes) + 1
    sizes = min_size + apportion(len(labels) - num_nodes * min_size, ranks.astype(np.float64) ** -exponent)
    shuffled = rng.permutation(len(labels))
    return [np.sort(part) for part in np.split(shuffled, np.cumsum(sizes)[:-1])]
