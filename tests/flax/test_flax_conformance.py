"""The flax learner passes core's learner conformance suite (float32, batch statistics, bfloat16)."""

from __future__ import annotations

import jax.numpy as jnp
import pytest
from flax_testkit import TinyBN, TinyMLP

from p2pfl.learning.learner import NodeData
from p2pfl_flax.learner import FlaxLearner

pytestmark = pytest.mark.framework

LearnerConformance = pytest.importorskip("p2pfl.testing.conformance.learner").LearnerConformance


class TestFlaxMLPConformance(LearnerConformance):
    def make_learner(self, node_data: NodeData, seed: int) -> FlaxLearner:
        model = TinyMLP(self.data_options["num_features"], node_data.num_classes, seed=seed)
        return FlaxLearner(model, node_data, seed=seed, optimizer="sgd", lr=0.05, momentum=0.5)


class TestFlaxBatchNormAdamConformance(LearnerConformance):
    """Batch statistics and an int32 counter travel as parameters; Adam keeps its state across fits."""

    data_options = {**LearnerConformance.data_options, "input_shape": (2, 4)}

    def make_learner(self, node_data: NodeData, seed: int) -> FlaxLearner:
        model = TinyBN(8, node_data.num_classes, seed=seed)
        return FlaxLearner(model, node_data, seed=seed, optimizer="adam", lr=0.01, optimizer_state="keep")


class TestFlaxBfloat16Conformance(LearnerConformance):
    correction_scale = 2.0  # bfloat16 rounding hides a weaker pull

    def make_learner(self, node_data: NodeData, seed: int) -> FlaxLearner:
        model = TinyMLP(self.data_options["num_features"], node_data.num_classes, dtype=jnp.bfloat16, seed=seed)
        return FlaxLearner(model, node_data, seed=seed, optimizer="sgd", lr=0.05)
