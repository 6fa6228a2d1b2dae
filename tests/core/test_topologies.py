"""Topologies: edge-list format, degree sequences, connectivity (checked with our own BFS), seeding."""

from __future__ import annotations

from collections import deque

import pytest

from p2pfl import topology
from p2pfl.plugins import PluginManager

SEEDS = range(8)


def bfs_connected(n: int, edges: list[tuple[int, int]]) -> bool:
    adjacency: dict[int, list[int]] = {i: [] for i in range(n)}
    for u, v in edges:
        adjacency[u].append(v)
        adjacency[v].append(u)
    seen, queue = {0}, deque([0])
    while queue:
        for v in adjacency[queue.popleft()]:
            if v not in seen:
                seen.add(v)
                queue.append(v)
    return len(seen) == n


def degrees(n: int, edges: list[tuple[int, int]]) -> list[int]:
    result = [0] * n
    for u, v in edges:
        result[u] += 1
        result[v] += 1
    return result


def assert_canonical(n: int, edges: list[tuple[int, int]]) -> None:
    assert all(isinstance(e, tuple) and 0 <= e[0] < e[1] < n for e in edges)
    assert edges == sorted(set(edges))


def load(name: str):
    return PluginManager(discover=False).registry("topologies").load(name)


# --------------------------------------------------------------------------- deterministic


@pytest.mark.parametrize("n", [1, 2, 5, 10])
def test_full(n):
    edges = load("full")(n, 0)
    assert_canonical(n, edges)
    assert len(edges) == n * (n - 1) // 2
    assert degrees(n, edges) == [n - 1] * n


@pytest.mark.parametrize("n", [3, 4, 9])
def test_ring(n):
    edges = load("ring")(n, 0)
    assert_canonical(n, edges)
    assert degrees(n, edges) == [2] * n
    assert len(edges) == n and bfs_connected(n, edges)


def test_ring_and_line_small():
    assert topology.ring(1) == [] and topology.line(1) == []
    assert topology.ring(2) == [(0, 1)] == topology.line(2)


@pytest.mark.parametrize("n", [2, 3, 7])
def test_line(n):
    edges = load("line")(n, 0)
    assert_canonical(n, edges)
    assert degrees(n, edges) == [1] + [2] * (n - 2) + [1]
    assert bfs_connected(n, edges)


def test_star():
    edges = load("star")(6, 0, center=2)
    assert_canonical(6, edges)
    assert degrees(6, edges) == [1, 1, 5, 1, 1, 1]
    assert topology.star(4) == [(0, 1), (0, 2), (0, 3)]
    with pytest.raises(ValueError, match="center"):
        topology.star(4, center=4)


def test_explicit_edges():
    edges = load("edges")(4, 0, edges=[[2, 1], [1, 2], [0, 1], (3, 2)])
    assert edges == [(0, 1), (1, 2), (2, 3)]
    with pytest.raises(ValueError, match="not connected"):
        topology.from_edges(4, edges=[[0, 1], [2, 3]])
    assert topology.from_edges(4, edges=[[0, 1], [2, 3]], connected=False) == [(0, 1), (2, 3)]
    for bad in ([[0, 4]], [[1, 1]], [[0, 1, 2]], [[-1, 0]]):
        with pytest.raises(ValueError, match="pair of two different node ids"):
            topology.from_edges(4, edges=bad)


@pytest.mark.parametrize("name", ["full", "ring", "line", "star", "random-regular", "erdos-renyi", "small-world"])
def test_bad_node_count(name):
    with pytest.raises(ValueError, match="num_nodes"):
        load(name)(0, 0)


# --------------------------------------------------------------------------- random


@pytest.mark.parametrize(("n", "k"), [(10, 3), (12, 4), (7, 2), (2, 1), (9, 8)])
def test_random_regular_degrees(n, k):
    for seed in SEEDS:
        edges = load("random-regular")(n, seed, k=k)
        assert_canonical(n, edges)
        assert degrees(n, edges) == [k] * n
        assert bfs_connected(n, edges)


@pytest.mark.parametrize(("n", "k", "match"), [(5, 3, "even"), (4, 4, "k < nodes"), (6, 1, "cannot be connected")])
def test_random_regular_impossible(n, k, match):
    with pytest.raises(ValueError, match=match):
        topology.random_regular(n, 0, k=k)


def test_erdos_renyi_connected_and_density():
    n, p = 40, 0.5
    counts = []
    for seed in SEEDS:
        edges = load("erdos-renyi")(n, seed, p=p)
        assert_canonical(n, edges)
        assert bfs_connected(n, edges)
        counts.append(len(edges))
    pairs = n * (n - 1) // 2
    # 8 draws of Binomial(780, 0.5): the mean is within 4 standard deviations of 390
    assert abs(sum(counts) / len(counts) - p * pairs) < 4 * (pairs * p * (1 - p) / len(counts)) ** 0.5


def test_erdos_renyi_sparse_is_joined():
    for seed in SEEDS:
        edges = topology.erdos_renyi(12, seed, p=0.02)
        assert bfs_connected(12, edges)
    # p = 0: no random edge, only the joining ones -> a path through all nodes
    path = topology.erdos_renyi(10, 3, p=0.0)
    assert len(path) == 9 and bfs_connected(10, path)
    assert sorted(degrees(10, path)) == [1, 1] + [2] * 8
    assert topology.erdos_renyi(6, 1, p=1.0) == topology.full(6)
    with pytest.raises(ValueError, match="p must be"):
        topology.erdos_renyi(5, 0, p=1.5)


def test_small_world():
    n, k = 20, 4
    lattice = sorted({tuple(sorted((u, (u + j) % n))) for u in range(n) for j in (1, 2)})
    assert load("small-world")(n, 0, k=k, p=0.0) == lattice
    for seed in SEEDS:
        edges = topology.small_world(n, seed, k=k, p=0.3)
        assert_canonical(n, edges)
        assert len(edges) == n * k // 2  # rewiring moves edges, never adds or drops them
        assert sum(degrees(n, edges)) == n * k
        assert bfs_connected(n, edges)
        assert edges != lattice
    for bad_k in (3, 0, 20):
        with pytest.raises(ValueError, match="k must be even"):
            topology.small_world(n, 0, k=bad_k)


@pytest.mark.parametrize(
    ("name", "params"), [("random-regular", {"k": 3}), ("erdos-renyi", {"p": 0.3}), ("small-world", {"k": 4, "p": 0.3})]
)
def test_seeded(name, params):
    make = load(name)
    assert make(16, 5, **params) == make(16, 5, **params)
    assert make(16, 5, **params) != make(16, 6, **params)
