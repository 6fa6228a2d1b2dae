"""Overhead of the torch learner's ``fit`` over a plain torch training loop.

One epoch over one node's MNIST partition (the built-in 5,000 digits split IID over 8
nodes, as in ``mnist-torch``), timed three ways in the same run, interleaved:

* ``learner``: ``TorchLearner.fit(1)`` (Fabric loop, LightningModule hooks, metrics,
  step accounting, shuffling);
* ``plain``: ``zero_grad / forward / cross_entropy / backward / step`` over the same batches,
  drawn from the learner's own loader with the same seed (same shuffling cost);
* ``plain_pregathered``: the same loop over those batches gathered beforehand (it pays
  nothing for data at all: the strictest baseline).

Prints JSON with the median time of each and the ratios (issue target: ``ratio`` at most
1.5). Times are medians of interleaved repeats, so that load from other processes hits
all three alike. Without the built-in dataset it uses random data of MNIST's shape.

    python benchmarks/torch_fit_overhead.py [--model mlp|cnn] [--repeats 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from p2pfl.learning.learner import NodeData
from p2pfl_torch.learner import TorchLearner
from p2pfl_torch.models import mnist_cnn, mnist_mlp

NODES = 8
BATCH_SIZE = 32
LR = 0.05
MOMENTUM = 0.9


def node_data() -> tuple[NodeData, str]:
    """Node 0's partition of the built-in MNIST, or random data of the same shape."""
    try:
        from p2pfl.data.loaders import mnist
        from p2pfl.data.node_data import build_node_data
        from p2pfl.data.partitioners import iid

        return build_node_data(mnist(), iid, NODES, seed=0, batch_size=BATCH_SIZE)[0], "mnist"
    except ImportError:
        return random_node_data(5000 * 4 // 5 // NODES, 5000 // 5 // NODES), "random"


def random_node_data(num_train: int, num_test: int) -> NodeData:
    import datasets

    rng = np.random.default_rng(0)
    features = datasets.Features(
        {"image": datasets.Sequence(datasets.Value("float32"), length=784), "label": datasets.Value("int64")}
    )

    def split(n: int) -> datasets.Dataset:
        x = rng.random((n, 784), dtype=np.float32)
        return datasets.Dataset.from_dict({"image": x, "label": rng.integers(0, 10, n)}, features=features)

    return NodeData(split(num_train), split(num_test), "image", "label", 10, BATCH_SIZE, (28, 28))


def plain_epoch(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    for x, y in batches:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    build = mnist_mlp if args.model == "mlp" else mnist_cnn

    data, source = node_data()
    learner = TorchLearner(build(), data, seed=0, lr=LR, momentum=MOMENTUM)  # also applies the thread budget
    plain_model = build()
    # The exact batches of the learner's next fits, gathered once for the plain loop.
    batches = list(learner.loaders.train(seed=0))

    runs = {
        "learner": lambda: learner.fit(1),
        "plain": lambda: plain_epoch(plain_model, learner.loaders.train(seed=0)),
        "plain_pregathered": lambda: plain_epoch(plain_model, batches),
    }
    for run in runs.values():  # warm-up: first-call costs are not what is measured
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            times[name].append(timed(run))
    median = {name: statistics.median(values) for name, values in times.items()}
    print(
        json.dumps(
            {
                "benchmark": "torch_fit_overhead",
                "model": args.model,
                "data": source,
                "train_samples": len(data.train),
                "batch_size": BATCH_SIZE,
                "batches": len(batches),
                "repeats": args.repeats,
                "torch_threads": torch.get_num_threads(),
                "learner_fit_seconds": round(median["learner"], 6),
                "plain_loop_seconds": round(median["plain"], 6),
                "plain_loop_pregathered_seconds": round(median["plain_pregathered"], 6),
                "ratio": round(median["learner"] / median["plain"], 3),
                "ratio_vs_pregathered": round(median["learner"] / median["plain_pregathered"], 3),
                "target_ratio": 1.5,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
