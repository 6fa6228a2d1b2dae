"""The p2pfl-torch plugin: cheap discovery, registrations, automatic learner choice, examples, models."""

from __future__ import annotations

import subprocess
import sys

import lightning as L
import pytest
import torch
from torch_testkit import LitClassifier

import p2pfl_torch.plugin
from p2pfl.node.components import learner_for_model
from p2pfl_torch.examples import mnist_torch, mnist_torch_cnn
from p2pfl_torch.learner import TorchLearner
from p2pfl_torch.models import mnist_cnn, mnist_mlp

pytestmark = pytest.mark.framework


def test_listing_plugins_does_not_import_torch_or_lightning() -> None:
    code = (
        "import sys\n"
        "from p2pfl.plugins.manager import PluginManager\n"
        "pm = PluginManager()\n"
        "assert 'torch' in pm.registry('learners')\n"
        "assert 'mnist-torch-cnn' in pm.registry('examples')\n"
        "heavy = sorted(m for m in ('torch', 'lightning') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registrations(p2pfl_register_plugin) -> None:
    info = p2pfl_register_plugin(p2pfl_torch.plugin, name="p2pfl-torch")
    assert info is not None
    from p2pfl.plugins.manager import default_plugin_manager

    plugins = default_plugin_manager()
    learner = plugins.registry("learners").get("torch")
    assert learner.target == "p2pfl_torch.learner:TorchLearner"
    assert learner.metadata["model_types"] == ["torch.nn.modules.module.Module"]
    assert learner.load() is TorchLearner
    # a node given any torch model (a LightningModule is one) picks this learner unnamed
    assert learner_for_model(plugins, mnist_mlp()) == "torch"
    assert learner_for_model(plugins, LitClassifier()) == "torch"
    assert plugins.load("examples", "mnist-torch")() == mnist_torch()


@pytest.mark.parametrize("example", [mnist_torch, mnist_torch_cnn])
def test_examples_are_valid_configs(example) -> None:
    config = example()
    assert config["model"]["learner"] == "torch"
    assert config["network"] == {"nodes": 8, "topology": "ring", "protocol": "memory"}
    assert config["data"]["partitioning"] == {"name": "iid"} and config["aggregator"] == {"name": "fedavg"}
    assert example() is not config  # a fresh dict each call
    config_module = pytest.importorskip("p2pfl.experiment.config")
    if hasattr(config_module, "prepare_config"):
        config_module.prepare_config(config, [])  # raises ConfigError on any problem


@pytest.mark.parametrize("shape", [(5, 28, 28), (5, 784), (5, 1, 28, 28)])
def test_models_take_mnist_inputs_and_return_logits(shape) -> None:
    x = torch.rand(shape)
    for model in (mnist_mlp(), mnist_cnn()):
        assert model(x).shape == (5, 10)


def test_models_are_seeded_without_the_global_generator() -> None:
    state = torch.random.get_rng_state()
    a, b, c = mnist_cnn(seed=1), mnist_cnn(seed=1), mnist_cnn(seed=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name])
    assert not torch.equal(a.state_dict()["classifier.weight"], c.state_dict()["classifier.weight"])
    assert sum(p.numel() for p in mnist_mlp(hidden=32).parameters()) == 784 * 32 + 32 + 32 * 10 + 10
    assert not isinstance(mnist_mlp(), L.LightningModule)
