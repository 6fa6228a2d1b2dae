"""Byzantine robustness at the aggregation level: 6 nodes train a softmax regression in
numpy; node 5 sends scaled or random models every round.

Robust aggregators must stay within 3 accuracy points of the honest FedAvg run while
FedAvg under attack degrades by more than 10 points. (The end-to-end MNIST version of this
test needs the experiment runner's attack hook; see docs/aggregators.md.)
"""

from __future__ import annotations

import numpy as np
import pytest

from p2pfl.aggregation import Aggregator, FedAvg
from p2pfl.parameters import Parameters, Update
from p2pfl_aggregators.robust import CenteredClipping, GeometricMedian, Krum, Median, MultiKrum, TrimmedMean

NODES, BYZANTINE, ROUNDS, FEATURES, CLASSES = 6, 5, 12, 10, 3


def blobs(rng: np.random.Generator, means: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, CLASSES, size=n)
    return (means[y] + rng.normal(size=(n, FEATURES))).astype(np.float32), y


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    means = rng.normal(0, 0.9, size=(CLASSES, FEATURES))
    return [blobs(rng, means, 80) for _ in range(NODES)], blobs(rng, means, 900)


def local_fit(params: Parameters, x: np.ndarray, y: np.ndarray, steps: int = 5, lr: float = 0.5) -> Parameters:
    w, b = params["w"].astype(np.float64), params["b"].astype(np.float64)
    onehot = np.eye(CLASSES)[y]
    for _ in range(steps):
        logits = x @ w + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / len(y)
        w, b = w - lr * x.T @ g, b - lr * g.sum(0)
    return {"w": w.astype(np.float32), "b": b.astype(np.float32)}


def accuracy(params: Parameters, test: tuple[np.ndarray, np.ndarray]) -> float:
    x, y = test
    return float(((x @ params["w"] + params["b"]).argmax(1) == y).mean())


def run(aggregator: Aggregator, data, attack: str | None) -> float:
    train, test = data
    rng = np.random.default_rng(1)
    model = {"w": np.zeros((FEATURES, CLASSES), np.float32), "b": np.zeros(CLASSES, np.float32)}
    for r in range(ROUNDS):
        updates = []
        for i, (x, y) in enumerate(train):
            local = local_fit(model, x, y)
            if i == BYZANTINE and attack == "scale":
                local = {k: (model[k] - 10.0 * (local[k] - model[k])).astype(np.float32) for k in local}
            elif i == BYZANTINE and attack == "random":
                local = {k: rng.normal(0, 10, size=v.shape).astype(np.float32) for k, v in local.items()}
            updates.append(Update(local, len(y), {f"node{i}"}, r))
        model = aggregator.aggregate(updates, model).parameters
    return accuracy(model, test)


ROBUST = {
    "median": Median,
    "trimmed-mean": TrimmedMean,
    "krum": Krum,
    "geometric-median": GeometricMedian,
    "multi-krum": MultiKrum,
    "centered-clipping": lambda: CenteredClipping(tau=1.0, iterations=3),
}


@pytest.fixture(scope="module")
def honest(data):
    return run(FedAvg(), data, None)


@pytest.mark.parametrize("attack", ["scale", "random"])
def test_fedavg_degrades_under_attack(data, honest, attack):
    assert honest > 0.75
    assert run(FedAvg(), data, attack) < honest - 0.10


@pytest.mark.parametrize("attack", ["scale", "random"])
@pytest.mark.parametrize("name", sorted(ROBUST))
def test_robust_aggregators_stay_close_to_honest(data, honest, name, attack):
    assert run(ROBUST[name](), data, attack) >= honest - 0.03
