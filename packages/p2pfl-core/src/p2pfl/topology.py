"""Topologies (plugin kind ``topologies``): which nodes of an experiment are neighbours.

A topology is ``(num_nodes, seed, **params) -> list[tuple[int, int]]``: an undirected
edge list over nodes ``0..num_nodes-1``, each edge as ``(i, j)`` with ``i < j``, sorted,
without self loops or duplicates. Random topologies draw from ``random.Random(seed)``,
so the same arguments always give the same graph. Pure Python: no numpy, no networkx.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Sequence

Edge = tuple[int, int]

# --------------------------------------------------------------------------- helpers


def normalize(edges: Iterable[Sequence[int]]) -> list[Edge]:
    """Edges as sorted ``(min, max)`` tuples without duplicates or self loops."""
    return sorted({(min(u, v), max(u, v)) for u, v in edges if u != v})


def components(num_nodes: int, edges: Iterable[Edge]) -> list[list[int]]:
    """Connected components (each sorted), ordered by their smallest node."""
    parent = list(range(num_nodes))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving keeps the trees flat
            x = parent[x]
        return x

    for u, v in edges:
        parent[root(u)] = root(v)
    groups: dict[int, list[int]] = {}
    for node in range(num_nodes):
        groups.setdefault(root(node), []).append(node)
    return sorted(groups.values())


def is_connected(num_nodes: int, edges: Iterable[Edge]) -> bool:
    return len(components(num_nodes, edges)) <= 1


def _check_nodes(num_nodes: int) -> None:
    if not isinstance(num_nodes, int) or num_nodes < 1:
        raise ValueError(f"num_nodes must be a positive integer, got {num_nodes!r}")


def _retry_connected(
    name: str, num_nodes: int, draw: Callable[[], set[Edge] | None], max_attempts: int, hint: str
) -> list[Edge]:
    """Call ``draw()`` until it returns a connected edge set (``None`` = failed draw)."""
    for _ in range(max_attempts):
        edges = draw()
        if edges is not None and is_connected(num_nodes, edges):
            return normalize(edges)
    raise ValueError(f"{name}: no connected graph found in {max_attempts} attempts; {hint}")


# --------------------------------------------------------------------------- deterministic


def full(num_nodes: int, seed: int = 0) -> list[Edge]:
    """Every pair of nodes is connected."""
    _check_nodes(num_nodes)
    return [(i, j) for i in range(num_nodes) for j in range(i + 1, num_nodes)]


def line(num_nodes: int, seed: int = 0) -> list[Edge]:
    """A path ``0 - 1 - ... - (n-1)``."""
    _check_nodes(num_nodes)
    return [(i, i + 1) for i in range(num_nodes - 1)]


def ring(num_nodes: int, seed: int = 0) -> list[Edge]:
    """A cycle: the line plus the edge ``(0, n-1)`` (for 3 nodes or more)."""
    return normalize([*line(num_nodes), (0, num_nodes - 1)])


def star(num_nodes: int, seed: int = 0, center: int = 0) -> list[Edge]:
    """Every node is connected to ``center`` only."""
    _check_nodes(num_nodes)
    if not 0 <= center < num_nodes:
        raise ValueError(f"star: center must be in [0, {num_nodes}), got {center}")
    return normalize((center, i) for i in range(num_nodes))


def from_edges(
    num_nodes: int, seed: int = 0, edges: Sequence[Sequence[int]] = (), connected: bool = True
) -> list[Edge]:
    """An explicit edge list, e.g. ``[[0, 1], [1, 2]]``; must connect every node unless ``connected`` is false."""
    _check_nodes(num_nodes)
    for edge in edges:
        if len(edge) != 2 or not all(isinstance(x, int) and 0 <= x < num_nodes for x in edge) or edge[0] == edge[1]:
            raise ValueError(f"edges: {list(edge)!r} is not a pair of two different node ids in [0, {num_nodes})")
    result = normalize(edges)
    if connected and not is_connected(num_nodes, result):
        parts = components(num_nodes, result)
        raise ValueError(f"edges: the graph is not connected (components {parts}); set connected: false to allow it")
    return result


# --------------------------------------------------------------------------- random


def erdos_renyi(num_nodes: int, seed: int = 0, p: float = 0.3) -> list[Edge]:
    """G(n, p): each pair is an edge with probability ``p``; then connected components are joined.

    Connectivity is guaranteed by *adding* edges, not by resampling: the components are put
    in a random order and each is joined to the next by one edge between random members, so
    ``components - 1`` edges are added (none when G(n, p) is already connected; ``p = 0``
    gives a random path through all nodes).
    """
    _check_nodes(num_nodes)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"erdos-renyi: p must be in [0, 1], got {p}")
    rng = random.Random(seed)
    edges = [(i, j) for i in range(num_nodes) for j in range(i + 1, num_nodes) if rng.random() < p]
    parts = components(num_nodes, edges)
    rng.shuffle(parts)
    bridges = [(rng.choice(a), rng.choice(b)) for a, b in itertools.pairwise(parts)]
    return normalize(edges + bridges)


def random_regular(num_nodes: int, seed: int = 0, k: int = 3, max_attempts: int = 1000) -> list[Edge]:
    """A connected random ``k``-regular graph (every node has exactly ``k`` neighbours).

    Drawn by random pairing of ``k`` stubs per node that avoids loops and duplicate
    edges (restarting when stuck), redrawn until connected.
    """
    _check_nodes(num_nodes)
    if not 0 <= k < num_nodes or (num_nodes * k) % 2:
        raise ValueError(f"random-regular: needs 0 <= k < nodes and nodes * k even, got k={k}, nodes={num_nodes}")
    if num_nodes > 1 and (k == 0 or (k == 1 and num_nodes > 2)):
        raise ValueError(f"random-regular: a {k}-regular graph on {num_nodes} nodes cannot be connected; raise k")
    rng = random.Random(seed)
    return _retry_connected(
        "random-regular", num_nodes, lambda: _pair_stubs(num_nodes, k, rng), max_attempts, "raise k or max_attempts"
    )


def _pair_stubs(num_nodes: int, k: int, rng: random.Random) -> set[Edge] | None:
    """One attempt of the stub-pairing algorithm; ``None`` when no valid pair is left."""
    edges: set[Edge] = set()
    stubs = [node for node in range(num_nodes) for _ in range(k)]
    while stubs:
        rng.shuffle(stubs)
        left: list[int] = []
        for u, v in zip(stubs[::2], stubs[1::2]):
            edge = (min(u, v), max(u, v))
            if u != v and edge not in edges:
                edges.add(edge)
            else:
                left += [u, v]
        open_nodes = sorted(set(left))
        if left and not any((u, v) not in edges for i, u in enumerate(open_nodes) for v in open_nodes[i + 1 :]):
            return None
        stubs = left
    return edges


def small_world(num_nodes: int, seed: int = 0, k: int = 4, p: float = 0.1, max_attempts: int = 100) -> list[Edge]:
    """Connected Watts-Strogatz graph: a ring lattice where each node has ``k`` nearest
    neighbours (``k`` even), each edge rewired with probability ``p``; redrawn until connected."""
    _check_nodes(num_nodes)
    if k % 2 or not 2 <= k < num_nodes:
        raise ValueError(f"small-world: k must be even and in [2, nodes), got k={k}, nodes={num_nodes}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"small-world: p must be in [0, 1], got {p}")
    rng = random.Random(seed)
    return _retry_connected(
        "small-world", num_nodes, lambda: _watts_strogatz(num_nodes, k, p, rng), max_attempts, "lower p or raise k"
    )


def _watts_strogatz(num_nodes: int, k: int, p: float, rng: random.Random) -> set[Edge]:
    neighbours: dict[int, set[int]] = {u: set() for u in range(num_nodes)}
    for u in range(num_nodes):
        for j in range(1, k // 2 + 1):
            v = (u + j) % num_nodes
            neighbours[u].add(v)
            neighbours[v].add(u)
    for j in range(1, k // 2 + 1):  # rewire lattice edge (u, u+j) to (u, w), as Watts and Strogatz do
        for u in range(num_nodes):
            v = (u + j) % num_nodes
            if rng.random() >= p or v not in neighbours[u] or len(neighbours[u]) >= num_nodes - 1:
                continue
            w = rng.randrange(num_nodes)
            while w == u or w in neighbours[u]:
                w = rng.randrange(num_nodes)
            neighbours[u].discard(v)
            neighbours[v].discard(u)
            neighbours[u].add(w)
            neighbours[w].add(u)
    return {(u, v) for u in neighbours for v in neighbours[u] if u < v}
