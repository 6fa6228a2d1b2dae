"""KerasLearner passes core's learner conformance suite (plain MLP; BatchNorm with Adam)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.framework

LearnerConformance = pytest.importorskip("p2pfl.testing.conformance.learner").LearnerConformance

from tf_testkit import bn_model, mlp  # noqa: E402

from p2pfl.learning.learner import NodeData  # noqa: E402
from p2pfl_tf.learner import KerasLearner  # noqa: E402


class TestKerasMLPConformance(LearnerConformance):
    def make_learner(self, node_data: NodeData, seed: int) -> KerasLearner:
        model = mlp(self.data_options["num_features"], node_data.num_classes, seed=seed, lr=0.1)
        return KerasLearner(model, node_data, seed=seed)


class TestKerasBatchNormConformance(LearnerConformance):
    """Non-trainable moving statistics travel as parameters; Adam keeps its state across fits."""

    data_options = {**LearnerConformance.data_options, "input_shape": (2, 4)}

    def make_learner(self, node_data: NodeData, seed: int) -> KerasLearner:
        model = bn_model((2, 4), node_data.num_classes, seed=seed, lr=0.01)
        return KerasLearner(model, node_data, seed=seed)
