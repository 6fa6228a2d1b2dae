"""The torch learner passes core's learner conformance suite, for each kind of model it accepts."""

from __future__ import annotations

import pytest
from torch_testkit import ConvBNNet, LitClassifier, tiny_mlp

from p2pfl.learning.learner import Learner, NodeData
from p2pfl.testing.conformance.learner import LearnerConformance
from p2pfl_torch.learner import TorchLearner

pytestmark = pytest.mark.framework


class TestPlainModule(LearnerConformance):
    """A plain nn.Module, wrapped by the learner from options (loss, optimizer, lr)."""

    def make_learner(self, node_data: NodeData, seed: int) -> Learner:
        return TorchLearner(tiny_mlp(seed=seed), node_data, seed=seed, loss="cross_entropy", optimizer="sgd", lr=0.1)


class TestLightningModule(LearnerConformance):
    """A user's LightningModule, used as is (it logs val_loss / val_acc)."""

    def make_learner(self, node_data: NodeData, seed: int) -> Learner:
        return TorchLearner(LitClassifier(seed=seed), node_data, seed=seed)


class TestBatchNormModule(LearnerConformance):
    """Buffers (running statistics, an int64 counter) travel with the parameters."""

    data_options = {"num_train": 128, "num_test": 64, "num_features": 16, "num_classes": 3, "input_shape": (1, 4, 4)}

    def make_learner(self, node_data: NodeData, seed: int) -> Learner:
        return TorchLearner(ConvBNNet(seed=seed), node_data, seed=seed, optimizer="adam", lr=0.01)
