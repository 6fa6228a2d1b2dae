"""A node's Hugging Face splits exported once to tensors, served as batches.

Each split is converted to tensors once, when the learner is built (``NodeData.numpy``:
inputs float32 ``(n, *input_shape)``, labels int64 ``(n,)``).

* With ``num_workers=0`` (the default) batches come from :class:`EpochBatches`: one
  ``randperm`` and one gather per epoch, then zero-copy slices. A ``DataLoader`` costs tens
  of microseconds per batch in bookkeeping, which on a node's small partition is a visible
  share of the training itself.
* With ``num_workers > 0`` a regular ``torch.utils.data.DataLoader`` is used, whose
  sampler yields whole batches of indices (slices of one ``randperm``) gathered with one
  fancy-indexing operation each, never ``batch_size`` item reads and a collate.

Every loader gets its own ``torch.Generator``: the training order is drawn from the seed
handed to :meth:`NodeLoaders.train`, and no loader ever draws from torch's global
generator (which concurrent nodes share).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from p2pfl.learning.learner import NodeData

Batch = tuple[torch.Tensor, torch.Tensor]


class TensorBatches(Dataset[Batch]):
    """``(x, y)`` tensors whose batches are read in one indexing operation (``__getitems__``)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if len(x) != len(y):
            raise ValueError(f"{len(x)} inputs but {len(y)} labels")
        self.x = x
        self.y = y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int | torch.Tensor) -> Batch:
        """One example for an int, a whole batch for a tensor of indices."""
        return self.x[index], self.y[index]


class EpochBatches:
    """Iterable of ``(x, y)`` batches; every iteration is a new epoch in a new order drawn from ``generator``.

    ``generator=None`` keeps the stored order (evaluation). Batches are slices of a fresh
    copy of the data (one gather per epoch), so a step that modifies its batch in place
    cannot corrupt the stored split.
    """

    def __init__(self, dataset: TensorBatches, batch_size: int, generator: torch.Generator | None) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.generator = generator

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        x, y = self.dataset.x, self.dataset.y
        if self.generator is None:
            order = torch.arange(len(y))
        else:
            order = torch.randperm(len(y), generator=self.generator)
        return zip(x[order].split(self.batch_size), y[order].split(self.batch_size))


class IndexBatches(Sampler[torch.Tensor]):
    """Batches of indices: consecutive slices of a permutation drawn from ``generator`` (or in order)."""

    def __init__(self, size: int, batch_size: int, generator: torch.Generator | None) -> None:
        self.size = size
        self.batch_size = batch_size
        self.generator = generator

    def __len__(self) -> int:
        return -(-self.size // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.generator is None:
            order = torch.arange(self.size)
        else:
            order = torch.randperm(self.size, generator=self.generator)
        return iter(order.split(self.batch_size))


def _already_batched(batch: Any) -> Any:
    # The dataset returns finished batches: nothing left to collate. Module-level so that
    # loaders with worker processes can pickle it.
    return batch


class NodeLoaders:
    """The training and evaluation batches of one node.

    Args:
        data: the node's splits.
        batch_size: overrides ``data.batch_size``.
        num_workers: worker processes per loader (``0``, the default, loads in the training
            thread; workers only pay off for expensive per-example transforms).
    """

    def __init__(self, data: NodeData, batch_size: int | None = None, num_workers: int = 0) -> None:
        self.batch_size = int(batch_size if batch_size is not None else data.batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if int(num_workers) < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.num_workers = int(num_workers)
        self.train_set = _tensors(data, "train")
        self.test_set = _tensors(data, "test")

    def train(self, seed: int) -> Iterable[Batch]:
        """The training batches, shuffled by a generator seeded with ``seed`` (reshuffled every epoch)."""
        return self._loader(self.train_set, shuffle=True, seed=seed)

    def test(self) -> Iterable[Batch]:
        """The evaluation batches, in order."""
        return self._loader(self.test_set, shuffle=False, seed=0)

    def dataloader(self, split: str = "train", seed: int = 0) -> DataLoader[Batch]:
        """A ``torch.utils.data.DataLoader`` over ``split`` (``"train"`` is shuffled by ``seed``).

        Whatever ``num_workers``: for code that wants a real DataLoader (the learner itself
        uses :meth:`train` / :meth:`test`).
        """
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        dataset = self.train_set if split == "train" else self.test_set
        return self._dataloader(dataset, _generator(seed), shuffle=split == "train")

    def _loader(self, dataset: TensorBatches, *, shuffle: bool, seed: int) -> Iterable[Batch]:
        generator = _generator(seed)
        if self.num_workers == 0:
            return EpochBatches(dataset, self.batch_size, generator if shuffle else None)
        return self._dataloader(dataset, generator, shuffle=shuffle)

    def _dataloader(self, dataset: TensorBatches, generator: torch.Generator, *, shuffle: bool) -> DataLoader[Batch]:
        return DataLoader(
            dataset,
            sampler=IndexBatches(len(dataset), self.batch_size, generator if shuffle else None),
            batch_size=None,  # the sampler already yields batches
            collate_fn=_already_batched,
            # also seeds the loader's own draw (worker base seed): never torch's global generator
            generator=generator,
            num_workers=self.num_workers,
        )


def _generator(seed: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def _tensors(data: NodeData, split: str) -> TensorBatches:
    x, y = data.numpy(split)
    return TensorBatches(torch.from_numpy(x), torch.from_numpy(y))


def batch_size_of(batch: object) -> int:
    """Examples in ``batch``: the length of its first tensor (1 if it holds none)."""
    if isinstance(batch, torch.Tensor):
        return len(batch) if batch.ndim else 1
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, list | tuple):
        for item in batch:
            if isinstance(item, torch.Tensor) and item.ndim:
                return len(item)
    return 1
