"""Partitioners: label and size statistics against independently computed expectations,
seeding, and each node's test split following its train split."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from p2pfl.data import DatasetSpec, build_node_data
from p2pfl.data.partitioners import apportion
from p2pfl.data.spec import column
from p2pfl.plugins import PluginManager

K = 10
#: unbalanced classes on purpose: class c has 300 + 20c samples (3,900 in all), in a shuffled order
LABELS = np.random.default_rng(123).permutation(np.repeat(np.arange(K), 300 + 20 * np.arange(K)))
NAMES = ["iid", "dirichlet", "shards", "label-skew", "quantity-skew"]


def load(name: str):
    return PluginManager(discover=False).registry("partitioners").load(name)


def counts(parts: list[np.ndarray], labels: np.ndarray = LABELS) -> np.ndarray:
    """nodes x classes matrix of label counts."""
    return np.stack([np.bincount(labels[p], minlength=K) for p in parts])


def chi_square(observed: np.ndarray, expected_share: np.ndarray) -> float:
    expected = observed.sum() * expected_share
    return float(((observed - expected) ** 2 / expected).sum())


def assert_disjoint_sorted(parts: list[np.ndarray], n: int) -> None:
    joined = np.concatenate(parts)
    assert len(np.unique(joined)) == len(joined)
    assert all(p.dtype == np.int64 and np.all(np.diff(p) > 0) for p in parts)
    assert joined.min() >= 0 and joined.max() < n


# chi-square with 9 degrees of freedom: P(X > 33.7) = 1e-4
CHI2_9_LIMIT = 33.7


def test_iid():
    n, nodes = len(LABELS), 8
    parts = load("iid")(LABELS, nodes, 0)
    assert_disjoint_sorted(parts, n)
    assert sorted(np.concatenate(parts)) == list(range(n))
    assert [len(p) for p in parts] == [n // nodes + (i < n % nodes) for i in range(nodes)]
    share = np.bincount(LABELS) / n
    assert all(chi_square(row, share) < CHI2_9_LIMIT for row in counts(parts))


@pytest.mark.parametrize("alpha", [0.1, 0.5, 2.0])
def test_dirichlet_concentration(alpha):
    """For proportions p ~ Dir(alpha * 1_N), E[sum_i p_i^2] = (alpha + 1) / (N alpha + 1)."""
    nodes, seeds = 5, range(12)
    herfindahl = []
    for seed in seeds:
        c = counts(load("dirichlet")(LABELS, nodes, seed, alpha=alpha, min_size=0))
        assert c.sum() == len(LABELS)
        herfindahl.append(((c / c.sum(axis=0)) ** 2).sum(axis=0).mean())
    expected = (alpha + 1) / (nodes * alpha + 1)
    stderr = np.std(herfindahl) / np.sqrt(len(seeds))
    assert abs(np.mean(herfindahl) - expected) < 4 * stderr + 0.01


def test_dirichlet_min_size():
    for seed in range(5):
        parts = load("dirichlet")(LABELS, 10, seed, alpha=0.3, min_size=100)
        assert min(len(p) for p in parts) >= 100
        assert_disjoint_sorted(parts, len(LABELS))
    with pytest.raises(ValueError, match="attempts"):
        load("dirichlet")(LABELS, 10, 0, alpha=0.01, min_size=350, max_attempts=5)
    with pytest.raises(ValueError, match="cannot give 10 nodes 400"):
        load("dirichlet")(LABELS, 10, 0, min_size=400)
    with pytest.raises(ValueError, match="alpha"):
        load("dirichlet")(LABELS, 4, 0, alpha=0)


def test_shards_aligned():
    """10 balanced classes, 5 nodes x 2 shards: every shard is exactly one class."""
    labels = np.random.default_rng(1).permutation(np.repeat(np.arange(K), 200))
    parts = load("shards")(labels, 5, 0, shards_per_node=2)
    c = counts(parts, labels)
    assert all(sorted(row[row > 0]) == [200, 200] for row in c)
    assert (c.sum(axis=0) == 200).all()


def test_shards_sizes_and_labels():
    nodes, k = 7, 3
    parts = load("shards")(LABELS, nodes, 0, shards_per_node=k)
    assert_disjoint_sorted(parts, len(LABELS))
    shard = len(LABELS) / (nodes * k)
    assert all(k * np.floor(shard) <= len(p) <= k * np.ceil(shard) for p in parts)
    # a shard cut from label-sorted data spans at most two labels (each class > one shard)
    assert all((row > 0).sum() <= 2 * k for row in counts(parts))
    with pytest.raises(ValueError, match="shards_per_node"):
        load("shards")(LABELS, nodes, 0, shards_per_node=0)


@pytest.mark.parametrize(("nodes", "per_node"), [(10, 2), (4, 3), (13, 1)])
def test_label_skew(nodes, per_node):
    parts = load("label-skew")(LABELS, nodes, 0, labels_per_node=per_node)
    assert_disjoint_sorted(parts, len(LABELS))
    c = counts(parts)
    assert all((row > 0).sum() == per_node for row in c)
    assert all(c[i, i % K] > 0 for i in range(nodes))
    totals = np.bincount(LABELS)
    for cls in range(K):
        held = c[:, cls][c[:, cls] > 0]
        if held.size:  # split evenly among its holders, nothing lost
            assert held.sum() == totals[cls] and held.max() - held.min() <= 1
    with pytest.raises(ValueError, match="labels_per_node"):
        load("label-skew")(LABELS, nodes, 0, labels_per_node=K + 1)


@pytest.mark.parametrize(("exponent", "min_size"), [(1.0, 1), (1.5, 20), (0.0, 1)])
def test_quantity_skew(exponent, min_size):
    n, nodes = len(LABELS), 8
    parts = load("quantity-skew")(LABELS, nodes, 0, exponent=exponent, min_size=min_size)
    assert_disjoint_sorted(parts, n)
    assert sum(len(p) for p in parts) == n
    sizes = sorted((len(p) for p in parts), reverse=True)
    share = np.array([r**-exponent for r in range(1, nodes + 1)])
    exact = min_size + (n - nodes * min_size) * share / share.sum()
    assert all(np.floor(e) <= s <= np.ceil(e) for s, e in zip(sizes, exact))
    largest = counts(parts)[np.argmax([len(p) for p in parts])]
    assert chi_square(largest, np.bincount(LABELS) / n) < CHI2_9_LIMIT


def test_apportion():
    assert list(apportion(10, [1, 1, 1])) == [4, 3, 3]
    assert list(apportion(7, [0, 2, 5])) == [0, 2, 5]
    assert list(apportion(5, [0, 0])) == [0, 0]
    assert list(apportion(100, [1, 2, 3, 4])) == [10, 20, 30, 40]


@pytest.mark.parametrize("name", NAMES)
def test_seeded(name):
    make = load(name)
    first, again, other = make(LABELS, 6, 7), make(LABELS, 6, 7), make(LABELS, 6, 8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize("name", NAMES)
def test_bad_arguments(name):
    make = load(name)
    with pytest.raises(ValueError, match="num_nodes"):
        make(LABELS, 0, 0)
    with pytest.raises(ValueError, match="integer class ids"):
        make(LABELS.astype(np.float32), 2, 0)
    with pytest.raises(ValueError, match="cannot give"):
        make(LABELS[:3], 4, 0)


# --------------------------------------------------------------------------- test splits follow


def tiny_spec(train_labels: np.ndarray, test_labels: np.ndarray) -> DatasetSpec:
    def split(labels: np.ndarray) -> datasets.Dataset:
        x = np.arange(len(labels), dtype=np.float32)[:, None]  # feature = row number, to trace rows
        return datasets.Dataset.from_dict({"x": x, "y": labels})

    return DatasetSpec(split(train_labels), split(test_labels), "x", "y", K, (1,))


@pytest.mark.parametrize(("name", "params"), [(n, {}) for n in NAMES] + [("dirichlet", {"alpha": 0.2, "min_size": 50})])
def test_test_split_follows_train_split(name, params):
    test_labels = np.random.default_rng(9).permutation(np.repeat(np.arange(K), 100))
    spec = tiny_spec(LABELS, test_labels)
    nodes = build_node_data(spec, load(name), 6, seed=3, batch_size=16, **params)
    train = np.stack([np.bincount(column(d.train, "y"), minlength=K) for d in nodes])
    test = np.stack([np.bincount(column(d.test, "y"), minlength=K) for d in nodes])
    assert np.array_equal(train, counts(load(name)(LABELS, 6, 3, **params)))
    # class c's 100 test samples are dealt in proportion to each node's train count of class c
    held = train.sum(axis=0) > 0
    expected = np.divide(100 * train, train.sum(axis=0), where=held, out=np.zeros(train.shape))
    assert np.all(np.abs(test - expected) < 1)
    assert ((test > 0) <= (train > 0)).all()  # no label the node does not train on
    assert test.sum() == 100 * held.sum()
    rows = np.concatenate([column(d.test, "x").ravel() for d in nodes])
    assert len(np.unique(rows)) == len(rows)  # disjoint test sets
    assert all(d.batch_size == 16 and d.num_classes == K and d.label == "y" for d in nodes)


def test_node_data_reproducible():
    test_labels = np.random.default_rng(2).permutation(np.repeat(np.arange(K), 30))
    spec = tiny_spec(LABELS, test_labels)
    runs = [build_node_data(spec, load("dirichlet"), 3, seed=s, alpha=0.5) for s in (1, 1, 2)]
    xs = [[d.numpy(split)[0] for d in run for split in ("train", "test")] for run in runs]
    assert all(np.array_equal(a, b) for a, b in zip(xs[0], xs[1]))
    assert not all(np.array_equal(a, b) for a, b in zip(xs[0], xs[2]))


def test_bad_partitioner_output():
    spec = tiny_spec(LABELS, LABELS[:50])
    with pytest.raises(ValueError, match="returned 1 partitions for 2 nodes"):
        build_node_data(spec, lambda labels, n, seed: [np.arange(5)], 2)
    with pytest.raises(ValueError, match="gave node 1 no training samples"):
        build_node_data(spec, lambda labels, n, seed: [np.arange(5), np.arange(0)], 2)
    with pytest.raises(ValueError, match="outside"):
        build_node_data(spec, lambda labels, n, seed: [np.arange(5), np.array([len(LABELS)])], 2)
