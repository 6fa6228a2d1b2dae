"""FedProx's proximal term (and SCAFFOLD's correction) through each framework's learner: one local SGD step on a model
with a single scalar weight moves it by exactly ``-lr * mu * (w - w_global)`` more than
the same step without the term (the data gradient cancels out in the difference).

The learner starts at ``w = 0.5`` and the round's global model is ``w_global = 1.5``, so the
proximal gradient ``mu * (w - w_global)`` is non-zero on the very first step.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from p2pfl.learning.learner import FitContext, Learner
from p2pfl.testing.data import synthetic_node_data
from p2pfl_aggregators.drift import CONTROL_KEY, DELTA_KEY, FedProx, Scaffold

pytestmark = pytest.mark.framework

W0, W_GLOBAL, MU, LR = 0.5, 1.5, 0.5, 0.25
EXPECTED_SHIFT = -LR * MU * (W0 - W_GLOBAL)  # +0.125, exactly representable


def node_data():
    # 8 examples, batch of 8: one epoch is one step
    return synthetic_node_data(num_train=8, num_test=4, num_features=1, num_classes=2, batch_size=8, seed=0)


def fresh(make_learner: Callable[[], Learner]) -> tuple[Learner, str, np.ndarray]:
    """A learner at ``w = W0``, its scalar weight's name, and an array shaped like it."""
    learner = make_learner()
    (name,) = learner.trainable_names()
    like = learner.get_parameters()[name]
    learner.set_parameters({name: np.full_like(like, W0)})
    return learner, name, like


def scalar(params: dict, name: str) -> float:
    return float(np.asarray(params[name]).reshape(-1)[0])


def one_step(make_learner: Callable[[], Learner], with_prox: bool) -> float:
    learner, name, like = fresh(make_learner)
    ctx = FitContext(node_id="n0", round=1, global_parameters={name: np.full_like(like, W_GLOBAL)}, trainable=[name])
    correction = FedProx(mu=MU).training_callback().on_fit_start(ctx) if with_prox else None
    result = learner.fit(1, correction)
    assert result.num_steps == 1
    assert result.learning_rate == pytest.approx(LR)
    return scalar(learner.get_parameters(), name)


def check_proximal_step(make_learner: Callable[[], Learner]) -> None:
    plain = one_step(make_learner, with_prox=False)
    prox = one_step(make_learner, with_prox=True)
    assert plain != W0  # the data gradient is not zero: the test would be vacuous otherwise
    assert prox - plain == pytest.approx(EXPECTED_SHIFT, abs=1e-6)
    check_scaffold_step(make_learner, plain)


def check_scaffold_step(make_learner: Callable[[], Learner], plain: float) -> None:
    """SCAFFOLD through the same learner: with c = 0.5 and c_i = 0 the step moves w by
    -lr * 0.5 more than the plain step, and option II's new c_i is then exactly the plain
    data gradient (W0 - plain) / lr."""
    learner, name, like = fresh(make_learner)
    node = Scaffold()
    callback = node.training_callback()
    extras = {CONTROL_KEY: {name: np.full_like(like, 0.5)}}
    ctx = FitContext(
        node_id="n0", round=1, global_parameters={name: np.full_like(like, W0)}, extras=extras, trainable=[name]
    )
    correction = callback.on_fit_start(ctx)
    result = learner.fit(1, correction)
    corrected = scalar(learner.get_parameters(), name)
    assert corrected - plain == pytest.approx(-LR * 0.5, abs=1e-6)
    delta = callback.on_fit_end(ctx, learner.get_parameters(), result)[DELTA_KEY]
    assert scalar(delta, name) == pytest.approx((W0 - plain) / LR, abs=1e-5)


def test_torch():
    torch = pytest.importorskip("torch")
    learner_mod = pytest.importorskip("p2pfl_torch.learner")

    class Scalar(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # shape (1,), not 0-d: p2pfl_torch.tensors.to_tensor turns 0-d arrays into (1,) (reported)
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            x = x.reshape(x.shape[0], 1)
            return torch.cat([x * self.w, torch.zeros_like(x)], dim=1)

    check_proximal_step(lambda: learner_mod.TorchLearner(Scalar(), node_data(), seed=0, optimizer="sgd", lr=LR))


def test_tensorflow():
    learner_mod = pytest.importorskip("p2pfl_tf.learner")
    keras = pytest.importorskip("keras")

    class Scalar(keras.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(), initializer="zeros", name="w")

        def call(self, x):
            x = keras.ops.reshape(x, (-1, 1))
            return keras.ops.concatenate([x * self.w, keras.ops.zeros_like(x)], axis=1)

    def make() -> Learner:
        inputs = keras.Input(shape=(1,))
        model = keras.Model(inputs, Scalar()(inputs))
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=LR),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        return learner_mod.KerasLearner(model, node_data(), seed=0)

    check_proximal_step(make)


def test_flax():
    learner_mod = pytest.importorskip("p2pfl_flax.learner")
    jnp = pytest.importorskip("jax.numpy")
    nnx = pytest.importorskip("flax.nnx")

    class Scalar(nnx.Module):
        def __init__(self) -> None:
            self.w = nnx.Param(jnp.zeros((), jnp.float32))

        def __call__(self, x):
            x = x.reshape((x.shape[0], 1))
            return jnp.concatenate([x * self.w[...], jnp.zeros_like(x)], axis=1)

    check_proximal_step(lambda: learner_mod.FlaxLearner(Scalar(), node_data(), seed=0, optimizer="sgd", lr=LR))
