"""Example models for the built-in MNIST: plain ``torch.nn.Module`` s (the learner wraps them).

Both accept inputs of shape ``(batch, 28, 28)`` (what the ``mnist`` dataset gives), or
already flat ``(batch, 784)`` / channel-first ``(batch, 1, 28, 28)`` ones, and return logits.

Initial weights are drawn from an explicit ``torch.Generator`` seeded with ``seed``, never
from torch's global generator (layers are created on the ``meta`` device, so torch's own
initialisation draws nothing): a run is reproducible whatever else the process does with
torch's global RNG, and building models from several threads at once cannot interfere.
The scheme is torch's own default (Kaiming-uniform weights, fan-in-uniform biases).
"""

from __future__ import annotations

import math

import torch
from torch import nn

MNIST_SIDE = 28
MNIST_PIXELS = MNIST_SIDE * MNIST_SIDE


def mnist_mlp(hidden: int = 128, num_classes: int = 10, seed: int = 0) -> nn.Module:
    """784 → ``hidden`` (ReLU) → ``num_classes``: flattens its input itself."""
    if hidden < 1 or num_classes < 2:
        raise ValueError(f"need hidden >= 1 and num_classes >= 2, got {hidden}, {num_classes}")
    with torch.device("meta"):
        model = nn.Sequential(
            nn.Flatten(),
            nn.Linear(MNIST_PIXELS, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )
    return seeded_init(model.to_empty(device="cpu"), seed)


class MnistCNN(nn.Module):
    """Two 3x3 conv blocks (16 and 32 channels, ReLU, 2x2 max-pool) and a linear classifier."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(32 * (MNIST_SIDE // 4) ** 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, 28, 28) or (B, 784) -> (B, 1, 28, 28): the dataset has no channel axis.
        x = x.reshape(len(x), 1, MNIST_SIDE, MNIST_SIDE)
        return self.classifier(self.features(x).flatten(1))  # type: ignore[no-any-return]


def mnist_cnn(num_classes: int = 10, seed: int = 0) -> nn.Module:
    """A small CNN (about 20k parameters) for 28x28 grey images; see :class:`MnistCNN`."""
    if num_classes < 2:
        raise ValueError(f"need num_classes >= 2, got {num_classes}")
    with torch.device("meta"):
        model = MnistCNN(num_classes)
    return seeded_init(model.to_empty(device="cpu"), seed)


def seeded_init(model: nn.Module, seed: int) -> nn.Module:
    """Re-draw every Linear/Conv weight and bias of ``model`` from a generator seeded with ``seed``.

    Other layers are left as they are (the example models have no others).
    """
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    with torch.no_grad():
        for layer in model.modules():
            if not isinstance(layer, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
                continue
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
            if layer.bias is not None:
                fan_in = layer.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in) if fan_in else 0.0
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return model
