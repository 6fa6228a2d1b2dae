"""Runnable examples of p2pfl-torch (``p2pfl run mnist-torch``, ``p2pfl run mnist-torch-cnn``).

Each example is an experiment config kept as YAML package data; the registered targets
return it as a fresh dict (so a caller may modify it). Importing this module does not
import torch.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml


def load(name: str) -> dict[str, Any]:
    """The experiment config stored as ``p2pfl_torch/examples/<name>.yaml``."""
    text = resources.files(__name__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    config = yaml.safe_load(text)
    if not isinstance(config, dict):
        raise ValueError(f"example {name!r} is not a mapping")
    return config


def mnist_torch() -> dict[str, Any]:
    """8 nodes, ring, iid MNIST, an MLP, FedAvg."""
    return load("mnist_torch")


def mnist_torch_cnn() -> dict[str, Any]:
    """8 nodes, ring, iid MNIST, a small CNN, FedAvg (mean test accuracy >= 0.90)."""
    return load("mnist_torch_cnn")
