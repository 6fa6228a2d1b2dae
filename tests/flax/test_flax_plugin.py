"""The p2pfl-flax plugin: registration through the entry point, cheap discovery, the example."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import p2pfl_flax.plugin
from p2pfl.experiment import prepare_config
from p2pfl.node.components import learner_for_model
from p2pfl.plugins.manager import PluginManager
from p2pfl_flax.examples import mnist_flax
from p2pfl_flax.learner import FlaxLearner
from p2pfl_flax.models import mnist_cnn, mnist_mlp

pytestmark = pytest.mark.framework

# Runs in a fresh interpreter, so that modules imported by other tests do not hide an import.
_DISCOVER = """
import json, sys
from p2pfl.plugins.manager import PluginManager
pm = PluginManager()
flax = pm.registry("learners").get("flax")
example = pm.registry("examples").get("mnist-flax")
heavy = sorted(m for m in ("jax", "flax", "optax", "jaxlib") if m in sys.modules)
print(json.dumps({"plugin": flax.plugin, "target": flax.target, "lazy": flax.is_lazy,
                  "model_types": flax.metadata.get("model_types"), "example": example.target, "heavy": heavy}))
"""


def test_entry_point_registers_lazily_without_importing_jax() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _DISCOVER], capture_output=True, text=True, timeout=300, check=True, env=dict(os.environ)
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["plugin"] == "p2pfl-flax"
    assert found["target"] == "p2pfl_flax.learner:FlaxLearner" and found["lazy"]
    assert found["example"] == "p2pfl_flax.examples:mnist_flax"
    assert found["heavy"] == []


def test_flax_models_pick_the_flax_learner() -> None:
    pm = PluginManager(discover=False)
    pm.register(p2pfl_flax.plugin, name="p2pfl-flax")
    assert pm.registry("learners").load("flax") is FlaxLearner
    for model in (mnist_mlp(hidden=8), mnist_cnn()):
        assert learner_for_model(pm, model) == "flax"
        # The metadata names a class of the model's MRO, written as core writes it.
        mro = [f"{c.__module__}.{c.__qualname__}" for c in type(model).__mro__]
        assert set(pm.registry("learners").get("flax").metadata["model_types"]) <= set(mro)


def test_mnist_flax_example_is_a_valid_config(p2pfl_register_plugin) -> None:
    p2pfl_register_plugin(p2pfl_flax.plugin, name="p2pfl-flax")
    config = mnist_flax()
    assert config["network"] == {"nodes": 8, "topology": "ring", "protocol": "memory"}
    assert config["data"]["partitioning"]["name"] == "iid"
    assert config["aggregator"]["name"] == "fedavg"
    assert config["model"]["learner"] == "flax"
    assert mnist_flax() is not config  # a fresh dict every call: callers may edit it
    resolved, _ = prepare_config(config)
    assert resolved["model"]["build"] == "p2pfl_flax.models:mnist_mlp"


def test_models_take_mnist_batches() -> None:
    import numpy as np

    x = np.zeros((5, 28, 28), np.float32)
    assert mnist_mlp(hidden=8)(x).shape == (5, 10)
    assert mnist_cnn()(x).shape == (5, 10)
    assert str(mnist_mlp(hidden=8, dtype="bfloat16")(x).dtype) == "bfloat16"
    with pytest.raises(ValueError, match="float64"):
        mnist_mlp(dtype="float64")


def test_jax_start_up_stays_quiet() -> None:
    """Importing and training print nothing on stderr (no "No GPU/TPU found" and the like)."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    code = (
        "from p2pfl.testing.data import synthetic_node_data\n"
        "from p2pfl_flax.learner import FlaxLearner\n"
        "from p2pfl_flax.models import mnist_mlp\n"
        "import os, jax\n"
        "data = synthetic_node_data(num_train=8, num_test=4, num_features=784, input_shape=(28, 28))\n"
        "FlaxLearner(mnist_mlp(hidden=4), data).fit(1)\n"
        "print(os.environ['JAX_PLATFORMS'], jax.default_backend())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env, check=True)
    assert out.stdout.split() == ["cpu", "cpu"]
    noise = [
        line for line in out.stderr.splitlines() if any(w in line.lower() for w in ("gpu", "tpu", "cuda", "platform"))
    ]
    assert noise == []
