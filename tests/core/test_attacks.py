"""Byzantine nodes of the `attack` config section."""

from __future__ import annotations

import numpy as np
import pytest

from p2pfl.experiment import ConfigError, prepare_config
from p2pfl.experiment.attacks import ByzantineLearner
from p2pfl.learning.numpy_learner import NumpyLearner, NumpyModel
from p2pfl.plugins import PluginManager
from p2pfl.testing.data import synthetic_node_data


def learner(seed=0):
    data = synthetic_node_data(seed=seed)
    return NumpyLearner(NumpyModel(8, data.num_classes, seed=seed), data, seed=seed)


@pytest.mark.parametrize(
    ("kind", "expected"), [("scale", lambda b, t: b - 10 * (t - b)), ("sign-flip", lambda b, t: 2 * b - t)]
)
def test_corrupted_update_matches_formula(kind, expected):
    honest, evil = learner(), ByzantineLearner(learner(), kind=kind, factor=-10)
    base = honest.get_parameters()
    evil.set_parameters(base)
    honest.fit(1)
    evil.fit(1)
    trained, sent = honest.get_parameters(), evil.get_parameters()
    for name in base:
        want = expected(base[name].astype(np.float64), trained[name].astype(np.float64)).astype(np.float32)
        np.testing.assert_array_equal(sent[name], want)
    # only the read right after a fit is corrupted
    np.testing.assert_array_equal(evil.get_parameters()["fc0.weight"], trained["fc0.weight"])


def test_random_attack_is_noise_around_the_base():
    evil = ByzantineLearner(learner(), kind="random", scale=2.0, seed=3)
    base = evil.get_parameters()
    evil.set_parameters(base)
    evil.fit(1)
    noise = evil.get_parameters()["fc0.weight"].astype(np.float64) - base["fc0.weight"]
    assert abs(noise.std() - 2.0) < 0.5


def test_attack_config_is_validated():
    plugins = PluginManager(discover=False)
    with pytest.raises(ConfigError) as err:
        prepare_config({"network": {"nodes": 3}, "attack": {"kind": "scal", "nodes": [7]}}, (), plugins)
    assert any(p.startswith("attack.kind: must be one of scale") for p in err.value.problems)
    assert any(p.startswith("attack.nodes: must be a list of node indices below 3") for p in err.value.problems)
