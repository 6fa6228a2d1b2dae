"""The plugin's registrations, the mnist-tf example, and a quiet TensorFlow start-up."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.framework

from p2pfl.plugins.manager import PluginManager  # noqa: E402


def test_plugin_registers_learner_and_example_without_importing_tensorflow() -> None:
    code = (
        "import sys; from p2pfl.plugins.manager import PluginManager; pm = PluginManager();"
        "c = pm.registry('learners').get('tensorflow'); e = pm.registry('examples').get('mnist-tf');"
        "print(c.target, c.metadata['model_types'], e.target);"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        "p2pfl_tf.learner:KerasLearner ['keras.src.models.model.Model'] p2pfl_tf.examples:mnist_tf",
        "[]",
    ]


def test_model_types_name_a_base_class_of_every_keras_model() -> None:
    from p2pfl_tf._tfenv import keras
    from p2pfl_tf.models import mnist_cnn, mnist_mlp
    from p2pfl_tf.plugin import KERAS_MODEL_TYPE

    class Sub(keras.Model):
        def call(self, x):
            return x

    inp = keras.Input((3,))
    for model in (mnist_mlp(hidden=4), mnist_cnn(), keras.Model(inp, keras.layers.Dense(2)(inp)), Sub()):
        assert KERAS_MODEL_TYPE in [f"{c.__module__}.{c.__qualname__}" for c in type(model).__mro__]


def test_example_config_is_complete() -> None:
    from p2pfl_tf.examples import mnist_tf

    config = mnist_tf()
    assert config["model"]["learner"] == "tensorflow"
    assert config["network"] == {"nodes": 8, "topology": "ring", "protocol": "memory"}
    assert config["data"]["partitioning"] == {"name": "iid"}
    assert config["aggregator"] == {"name": "fedavg"}
    config["network"]["nodes"] = 1
    assert mnist_tf()["network"]["nodes"] == 8  # a fresh dict each call


def test_models_are_seeded_and_take_28x28_inputs() -> None:
    import numpy as np

    from p2pfl_tf.models import mnist_cnn, mnist_mlp

    x = np.random.default_rng(0).random((2, 28, 28), dtype=np.float32)
    for factory in (mnist_mlp, mnist_cnn):
        a, b, c = factory(seed=1), factory(seed=1), factory(seed=2)
        assert all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))
        assert not all(np.array_equal(u, v) for u, v in zip(a.get_weights(), c.get_weights()))
        assert a(x).shape == (2, 10)


def test_importing_the_learner_prints_nothing() -> None:
    """TensorFlow's start-up lines (oneDNN notice, absl preamble) stay off the console."""
    result = subprocess.run(
        [sys.executable, "-c", "import p2pfl_tf.learner, p2pfl_tf.models; p2pfl_tf.models.mnist_mlp(hidden=2)"],
        capture_output=True, text=True, check=True,
        env={k: v for k, v in __import__("os").environ.items() if not k.startswith(("TF_CPP", "KERAS_BACKEND"))},
    )  # fmt: skip
    assert result.stdout == ""
    assert result.stderr == ""


def test_noise_filter_keeps_what_is_not_tensorflow_logging() -> None:
    from p2pfl_tf._tfenv import split_noise

    text = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796316833.004404   13690 port.cc:153] oneDNN custom operations are on.\n"
        "2024-01-01 12:00:00.123456: W tensorflow/core/util.cc:1] a warning\n"
        "E0000 00:00:1796316833.004404   13690 cuda.cc:9] an error\n"
        "a user's own line\n"
    )
    kept, dropped = split_noise(text, 2)
    assert kept == "E0000 00:00:1796316833.004404   13690 cuda.cc:9] an error\na user's own line\n"
    assert dropped.count("\n") == 3
    assert split_noise(text, 0) == (text, "")


def test_core_picks_this_learner_for_a_keras_model() -> None:
    """Core's lookup by ``model_types`` (entry-point discovery, no learner named) finds ``tensorflow``."""
    from p2pfl.node.components import learner_for_model
    from p2pfl_tf.models import mnist_mlp

    assert learner_for_model(PluginManager(), mnist_mlp(hidden=2)) == "tensorflow"
