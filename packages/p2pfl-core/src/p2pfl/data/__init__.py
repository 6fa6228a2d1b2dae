"""Datasets and partitioning (plugin kinds ``datasets`` and ``partitioners``); see ``docs/data.md``.

Importing this package does not import Hugging Face ``datasets`` or ``pyarrow``; the
loaders in :mod:`p2pfl.data.loaders` import them when called.
"""

from p2pfl.data.node_data import build_node_data, follow_partition, partition
from p2pfl.data.spec import DatasetSpec

__all__ = ["DatasetSpec", "build_node_data", "follow_partition", "partition"]
