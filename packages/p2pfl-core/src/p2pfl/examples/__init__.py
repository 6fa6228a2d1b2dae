"""Built-in examples (plugin kind ``examples``) and the helper plugins use to ship their own."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml


def packaged_config(package: str, filename: str) -> dict[str, Any]:
    """Read an experiment YAML shipped as package data of ``package``."""
    text = resources.files(package).joinpath(filename).read_text()
    config: dict[str, Any] = yaml.safe_load(text)
    return config


def mnist() -> dict[str, Any]:
    """The ``mnist`` example: numpy MLP, 8 nodes on a ring, IID split of the built-in digits."""
    return packaged_config(__name__, "mnist.yaml")
