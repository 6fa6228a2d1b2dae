"""Core's GradientCorrection in the torch learner: exact arithmetic on a scalar model."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn
from torch_testkit import scalar_node_data

from p2pfl.learning.learner import GradientCorrection
from p2pfl.parameters import ParameterMismatchError
from p2pfl_torch.learner import TorchLearner

pytestmark = pytest.mark.framework

# Dyadic values: every product and sum below is exact in float32, so the check is exact.
W0, W_GLOBAL, MU, LR, X, TARGET = 2.0, 1.0, 0.5, 0.25, 1.0, 0


def scalar_model(w: float = W0) -> nn.Linear:
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(w)
    return model


def test_fedprox_step_moves_the_weight_by_exactly_the_proximal_formula() -> None:
    # One batch of one row: loss = (w*x - t)^2, so g = 2 * (w*x - t) * x = 4.
    learner = TorchLearner(scalar_model(), scalar_node_data(X, TARGET), loss="mse", optimizer="sgd", lr=LR)
    g = 2.0 * (W0 * X - TARGET) * X
    proximal = GradientCorrection(scale=MU, offset={"weight": np.array([[-MU * W_GLOBAL]], np.float32)})

    result = learner.fit(1, proximal)

    expected = W0 - LR * (g + MU * (W0 - W_GLOBAL))  # = 0.875
    assert learner.get_parameters()["weight"].item() == expected
    assert result.num_steps == 1 and result.learning_rate == LR


def test_scaffold_offset_is_added_at_every_step() -> None:
    # Two steps of plain SGD with a constant offset c: w <- w - lr * (g(w) + c).
    c = 0.75
    learner = TorchLearner(scalar_model(), scalar_node_data(X, TARGET, copies=2), loss="mse", lr=LR)
    result = learner.fit(1, GradientCorrection(offset={"weight": np.array([[c]], np.float32)}))
    w = W0
    for _ in range(2):
        w = w - LR * (2.0 * (w * X - TARGET) * X + c)
    assert learner.get_parameters()["weight"].item() == w
    assert result.num_steps == 2


def test_correction_applies_to_a_trainable_parameter_without_gradient() -> None:
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = scalar_model()
            self.unused = scalar_model(3.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)  # type: ignore[no-any-return]

    learner = TorchLearner(TwoHeads(), scalar_node_data(X, TARGET), loss="mse", lr=LR)
    learner.fit(1, GradientCorrection(scale=MU))
    # g = 0 for the unused weight, so only the correction moves it: w - lr * mu * w.
    assert learner.get_parameters()["unused.weight"].item() == 3.0 - LR * MU * 3.0


def test_correction_works_with_manual_optimization() -> None:
    class Manual(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False
            self.lin = scalar_model()

        def training_step(self, batch, batch_idx):
            optimizer = self.optimizers()
            optimizer.zero_grad()
            x, y = batch
            loss = ((self.lin(x).squeeze(1) - y.float()) ** 2).mean()
            self.manual_backward(loss)
            optimizer.step()

        def test_step(self, batch, batch_idx):
            self.log("loss", 0.0)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=LR)

    learner = TorchLearner(Manual(), scalar_node_data(X, TARGET))
    result = learner.fit(
        1, GradientCorrection(scale=MU, offset={"lin.weight": np.array([[-MU * W_GLOBAL]], np.float32)})
    )
    assert learner.get_parameters()["lin.weight"].item() == W0 - LR * (4.0 + MU * (W0 - W_GLOBAL))
    assert result.num_steps == 1


def test_no_correction_leaves_plain_sgd() -> None:
    learner = TorchLearner(scalar_model(), scalar_node_data(X, TARGET), loss="mse", lr=LR)
    learner.fit(1, GradientCorrection())
    assert learner.get_parameters()["weight"].item() == W0 - LR * 4.0


def test_offsets_for_buffers_are_ignored_and_unknown_names_rejected() -> None:
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    learner = TorchLearner(model, scalar_node_data(X, TARGET, copies=2, batch_size=2), loss="mse", lr=LR)
    learner.fit(1, GradientCorrection(offset={"1.running_mean": np.zeros(1, np.float32)}))  # not trained: ignored
    with pytest.raises(ParameterMismatchError, match="nope"):
        learner.fit(1, GradientCorrection(offset={"nope": np.zeros(1, np.float32)}))
    with pytest.raises(ParameterMismatchError, match=r"0\.weight"):
        learner.fit(1, GradientCorrection(offset={"0.weight": np.zeros(3, np.float32)}))
