"""Example experiments of p2pfl-flax (registered as ``examples``)."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml


def load_example(filename: str) -> dict[str, Any]:
    """The experiment config stored as package data ``p2pfl_flax/examples/<filename>``."""
    text = resources.files(__name__).joinpath(filename).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def mnist_flax() -> dict[str, Any]:
    """``mnist-flax``: 8 nodes on a ring, iid MNIST, in-memory transport, FedAvg, a Flax MLP."""
    return load_example("mnist_flax.yaml")
