"""Small torch models and data shared by the p2pfl-torch tests (imported by the test modules)."""

from __future__ import annotations

import datasets
import lightning as L
import numpy as np
import torch
from torch import nn

from p2pfl.learning.learner import NodeData
from p2pfl_torch.models import seeded_init


def tiny_mlp(features: int = 8, classes: int = 3, seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(features, 16), nn.ReLU(), nn.Linear(16, classes))
    return seeded_init(model, seed).to(dtype)


class ConvBNNet(nn.Module):
    """Conv -> BatchNorm -> ReLU -> Linear on (batch, 1, 4, 4) or (batch, 16) inputs."""

    def __init__(self, classes: int = 3, seed: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, classes)
        seeded_init(self, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x.reshape(len(x), 1, 4, 4))))
        return self.fc(h.flatten(1))  # type: ignore[no-any-return]


class LitClassifier(L.LightningModule):
    """A user-written LightningModule: logs ``val_loss``/``val_acc`` (not the standard names)."""

    def __init__(self, features: int = 8, classes: int = 3, seed: int = 0, lr: float = 0.1) -> None:
        super().__init__()
        self.net = tiny_mlp(features, classes, seed)
        self.lr = lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(dim=1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def scalar_node_data(x: float, label: int, *, copies: int = 1, batch_size: int = 1) -> NodeData:
    """``copies`` identical rows ``([x], label)`` in both splits (for exact gradient arithmetic)."""
    features = datasets.Features(
        {"x": datasets.Sequence(datasets.Value("float32"), length=1), "label": datasets.Value("int64")}
    )
    rows = {"x": [[x]] * copies, "label": [label] * copies}
    split = datasets.Dataset.from_dict(rows, features=features)
    return NodeData(split, split, "x", "label", num_classes=2, batch_size=batch_size, input_shape=(1,))


def random_node_data(
    num_train: int, num_test: int, features: int = 8, classes: int = 3, *, batch_size: int = 16, seed: int = 0
) -> NodeData:
    """Uniform random inputs and labels (for tests that only need the data's shape and size)."""
    rng = np.random.default_rng(seed)
    feats = datasets.Features(
        {"x": datasets.Sequence(datasets.Value("float32"), length=features), "label": datasets.Value("int64")}
    )

    def split(n: int) -> datasets.Dataset:
        return datasets.Dataset.from_dict(
            {"x": rng.random((n, features), dtype=np.float32), "label": rng.integers(0, classes, n)}, features=feats
        )

    return NodeData(split(num_train), split(num_test), "x", "label", classes, batch_size, (features,))
