"""Example experiments of p2pfl-tf (plugin kind ``examples``); configs are YAML package data."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml


def _load(resource: str) -> dict[str, Any]:
    config = yaml.safe_load(resources.files(__package__).joinpath(resource).read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise ValueError(f"{resource} must hold a mapping, got {type(config).__name__}")
    return config


def mnist_tf() -> dict[str, Any]:
    """8 Keras MLP nodes on a ring learn the built-in MNIST (iid, in memory, FedAvg); a fresh dict per call."""
    return _load("mnist_tf.yaml")
