"""KerasLearner training: metrics, steps, seeds, threads, gradient correction and interrupt."""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytestmark = pytest.mark.framework

from tf_testkit import bn_model, mlp, scalar_model, table_data  # noqa: E402

from p2pfl.learning.learner import GradientCorrection  # noqa: E402
from p2pfl.parameters import ParameterMismatchError, parameters_equal  # noqa: E402
from p2pfl.testing.data import synthetic_node_data  # noqa: E402
from p2pfl_tf._tfenv import keras, tf  # noqa: E402
from p2pfl_tf.learner import KerasLearner, with_accuracy  # noqa: E402

DEADLINE = 120.0  # seconds; generous on purpose (shared CI machine), never reached when things work


@pytest.fixture(scope="module")
def blobs():
    return synthetic_node_data(num_train=120, num_test=60, num_features=8, num_classes=3, batch_size=16, seed=3)


# ---------------------------------------------------------------------- metrics and steps


def test_fit_reports_steps_samples_and_learning_rate(blobs) -> None:
    learner = KerasLearner(mlp(8, 3), blobs, lr=0.05)
    result = learner.fit(3)
    assert result.num_samples == 120
    assert result.num_steps == 3 * math.ceil(120 / 16)
    assert result.learning_rate == pytest.approx(0.05)
    assert not result.interrupted
    assert set(result.metrics) == {"train_loss", "train_accuracy"}


def test_evaluate_matches_a_hand_computation(blobs) -> None:
    learner = KerasLearner(mlp(8, 3), blobs)
    learner.fit(1)
    metrics = learner.evaluate()
    x, y = blobs.numpy("test")
    logits = learner.predict(x).astype(np.float64)
    log_probs = logits - logits.max(axis=1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(axis=1, keepdims=True))
    assert metrics["loss"] == pytest.approx(-log_probs[np.arange(len(y)), y].mean(), rel=1e-5)
    assert metrics["accuracy"] == pytest.approx(np.mean(logits.argmax(axis=1) == y), abs=1e-6)
    assert metrics["num_samples"] == 60


def test_accuracy_is_reported_under_any_keras_name(blobs) -> None:
    model = mlp(8, 3)
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(),
            keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2"),
        ],
    )
    metrics = KerasLearner(model, blobs).evaluate()
    assert metrics["accuracy"] == metrics["sparse_categorical_accuracy"]
    assert "top2" in metrics  # every compiled metric is reported
    assert with_accuracy({"loss": 1.0, "acc": 0.5})["accuracy"] == 0.5
    assert "accuracy" not in with_accuracy({"loss": 1.0, "a_accuracy": 0.5, "b_accuracy": 0.7})


# ---------------------------------------------------------------------- seeds and threads


def _train(learner: KerasLearner, epochs: int = 2) -> dict[str, np.ndarray]:
    learner.fit(epochs)
    learner.fit(1)  # a second fit draws a new order from the same seed
    return learner.get_parameters()


def test_same_seed_is_bitwise_reproducible_and_seeds_matter(blobs) -> None:
    a = _train(KerasLearner(bn_model((8,), 3), blobs, seed=5))
    b = _train(KerasLearner(bn_model((8,), 3), blobs, seed=5))
    c = _train(KerasLearner(bn_model((8,), 3), blobs, seed=6))
    assert parameters_equal(a, b)
    assert not parameters_equal(a, c)


def test_concurrent_learners_in_threads_match_sequential_runs(blobs) -> None:
    other = synthetic_node_data(num_train=96, num_test=30, num_features=8, num_classes=3, batch_size=8, seed=4)
    setups = [(blobs, 1), (other, 2), (blobs, 3)]
    sequential = [_train(KerasLearner(bn_model((8,), 3, seed=s), d, seed=s)) for d, s in setups]
    learners = [KerasLearner(bn_model((8,), 3, seed=s), d, seed=s) for d, s in setups]
    with ThreadPoolExecutor(len(learners)) as pool:
        concurrent = [f.result(timeout=DEADLINE) for f in [pool.submit(_train, lrn) for lrn in learners]]
    for seq, conc in zip(sequential, concurrent):
        assert parameters_equal(seq, conc)


def test_a_model_serves_one_learner_only(blobs) -> None:
    model = mlp(8, 3)
    KerasLearner(model, blobs)
    with pytest.raises(ValueError, match="own model"):
        KerasLearner(model, blobs)


def test_bad_models_and_options_are_rejected(blobs) -> None:
    with pytest.raises(TypeError, match=r"keras\.Model"):
        KerasLearner(object(), blobs)
    uncompiled = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="compile"):
        KerasLearner(uncompiled, blobs)
    with pytest.raises(TypeError, match="epochz"):
        KerasLearner(mlp(8, 3), blobs, epochz=3)


# ---------------------------------------------------------------------- gradient correction

W, W_GLOBAL, MU, LR = 1.0, 0.5, 0.5, 0.25  # powers of two: every float32 operation below is exact
ONE_POINT = table_data(np.ones((1, 1)), np.zeros(1), num_classes=2, batch_size=1)


def _one_step(optimizer, correction: GradientCorrection | None) -> float:
    learner = KerasLearner(scalar_model(W, optimizer), ONE_POINT)
    result = learner.fit(1, correction)
    assert result.num_steps == 1
    return float(learner.get_parameters()["dense/kernel"][0, 0])


@pytest.mark.parametrize("wrap", [False, True], ids=["sgd", "loss-scaled-sgd"])
def test_proximal_step_is_exact(wrap: bool) -> None:
    def optimizer():
        sgd = keras.optimizers.SGD(LR)
        return keras.optimizers.LossScaleOptimizer(sgd) if wrap else sgd

    grad = 2 * W  # d/dw of the squared error (w * 1 - 0)^2
    prox = GradientCorrection(scale=MU, offset={"dense/kernel": np.full((1, 1), -MU * W_GLOBAL, np.float32)})
    assert _one_step(optimizer(), None) == W - LR * grad
    assert _one_step(optimizer(), prox) == W - LR * (grad + MU * (W - W_GLOBAL))


def test_offset_only_step_is_exact() -> None:
    """SCAFFOLD's shape: scale 0, a constant offset (c - c_i) added to the gradient."""
    scaffold = GradientCorrection(offset={"dense/kernel": np.full((1, 1), 0.5, np.float32)})
    assert _one_step(keras.optimizers.SGD(LR), scaffold) == W - LR * (2 * W + 0.5)


def test_a_fit_after_a_corrected_one_is_plain_again(blobs) -> None:
    plain, corrected = KerasLearner(mlp(8, 3), blobs, seed=1), KerasLearner(mlp(8, 3), blobs, seed=1)
    plain.fit(1)
    corrected.fit(1, GradientCorrection(scale=0.1, offset={"dense_1/bias": np.full(3, 0.5, np.float32)}))
    assert not parameters_equal(plain.get_parameters(), corrected.get_parameters())
    corrected.set_parameters(plain.get_parameters())
    plain.fit(1)
    corrected.fit(1)
    assert parameters_equal(plain.get_parameters(), corrected.get_parameters())


def test_correction_of_buffers_or_unknown_names_is_rejected(blobs) -> None:
    learner = KerasLearner(bn_model((8,), 3), blobs)
    with pytest.raises(ParameterMismatchError, match=r"non-trainable.*moving_mean"):
        learner.fit(1, GradientCorrection(offset={"batch_normalization/moving_mean": np.zeros(16, np.float32)}))
    with pytest.raises(ParameterMismatchError, match="nope"):
        learner.fit(1, GradientCorrection(offset={"nope": np.zeros(1, np.float32)}))
    with pytest.raises(ParameterMismatchError, match="dense/bias: shape"):
        learner.fit(1, GradientCorrection(offset={"dense/bias": np.zeros(3, np.float32)}))


def test_scale_correction_leaves_buffers_alone(blobs) -> None:
    """Normalizing the raw input first makes the moving statistics depend on the data only."""

    def input_bn(seed: int) -> KerasLearner:
        model = keras.Sequential(
            [keras.Input((8,)), keras.layers.BatchNormalization(), keras.layers.Dense(3, kernel_initializer="ones")]
        )
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(True))
        return KerasLearner(model, blobs, seed=seed)

    plain, decayed = input_bn(2), input_bn(2)
    plain.fit(2)
    decayed.fit(2, GradientCorrection(scale=1.0))
    a, b = plain.get_parameters(), decayed.get_parameters()
    for name in ("batch_normalization/moving_mean", "batch_normalization/moving_variance"):
        assert a[name].tobytes() == b[name].tobytes()
    assert np.sum(np.square(b["dense/kernel"])) < np.sum(np.square(a["dense/kernel"]))


# ---------------------------------------------------------------------- interrupt


class Steps:
    """Counts the forward passes a model executes and signals the first one."""

    def __init__(self) -> None:
        self.count = 0
        self.started = threading.Event()

    def tick(self) -> np.float32:
        self.count += 1
        self.started.set()
        return np.float32(0.0)


class StepProbe(keras.layers.Layer):
    """Identity layer calling ``on_step`` (in Python) at every executed forward pass."""

    def __init__(self, on_step) -> None:
        super().__init__()
        self.on_step = on_step  # a bound method: Keras does not track (copy) it, unlike a list

    def call(self, x):
        tick = tf.py_function(self.on_step, [], tf.float32)
        tick.set_shape(())
        return x + tf.stop_gradient(tick)

    def compute_output_shape(self, input_shape):
        return input_shape


def test_interrupt_during_a_long_epoch_returns_within_a_batch() -> None:
    rows = 20_000  # batch size 1: one epoch is 20,000 steps, far more than the test lets it run
    rng = np.random.default_rng(0)
    data = table_data(rng.normal(size=(rows, 2)), rng.integers(0, 2, rows), num_classes=2, batch_size=1)
    steps = Steps()
    model = keras.Sequential([keras.Input((2,)), StepProbe(steps.tick), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    learner = KerasLearner(model, data)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(learner.fit, 1)
        future.add_done_callback(lambda _: steps.started.set())  # a failing fit must not leave us waiting
        assert steps.started.wait(DEADLINE), "training never started"
        assert not future.done(), f"fit ended before interrupt(): {future.result()}"
        learner.interrupt()
        forward_passes = steps.count  # read after interrupt(): at most the running batch may follow
        result = future.result(timeout=DEADLINE)
    assert result.interrupted
    assert 1 <= result.num_steps <= forward_passes + 1 < rows
    # The next fit is not affected by the earlier interrupt.
    again = KerasLearner(mlp(2, 2), table_data(np.ones((4, 2)), np.zeros(4), num_classes=2, batch_size=2))
    again.interrupt()
    assert not again.fit(1).interrupted
