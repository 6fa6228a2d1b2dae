"""Training with the flax learner: corrections, interruption, compilation, reproducibility, options."""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from flax_testkit import Probe, Scalar, TinyMLP, node_data_from_arrays

from p2pfl.learning.learner import GradientCorrection
from p2pfl.parameters import parameters_equal
from p2pfl.testing.data import synthetic_node_data
from p2pfl_flax.learner import FlaxLearner

pytestmark = pytest.mark.framework

DEADLINE = 120.0  # seconds; generous: the machine may be busy


def _blobs(num_train: int = 64, batch_size: int = 16, seed: int = 0):
    return synthetic_node_data(
        num_train=num_train, num_test=32, num_features=8, num_classes=3, batch_size=batch_size, seed=seed
    )


# ------------------------------------------------------------------ gradient correction


@pytest.mark.parametrize("mu", [0.0, 0.5])
def test_proximal_step_is_exact(mu: float) -> None:
    """One SGD step moves each weight by exactly lr * (g + mu * (w - w_global))."""
    x = np.array([[1.0]], np.float32)
    data = node_data_from_arrays(x, np.array([0]), x, np.array([0]), classes=2, batch_size=1)
    lr, w, b = 0.5, np.float32(2.0), np.float32(-2.0)
    global_params = {"b": np.float32(0.5), "w": np.float32(0.0)}
    learner = FlaxLearner(Scalar(), data, optimizer="sgd", lr=lr)
    learner.set_parameters({"b": np.array(b), "w": np.array(w)})

    correction = GradientCorrection(
        scale=mu, offset={n: np.array(-mu * v, np.float32) for n, v in global_params.items()}
    )
    result = learner.fit(1, correction)

    # By hand: logits [w*x + b, 0] = [0, 0], label 0 -> p0 = 1/2, dL/dz = p0 - 1 = -1/2.
    dz = 0.5 - 1.0
    grads = {"w": dz * float(x[0, 0]), "b": dz}
    start = {"w": float(w), "b": float(b)}
    expected = {n: start[n] - lr * (grads[n] + mu * (start[n] - float(global_params[n]))) for n in start}
    got = learner.get_parameters()
    assert {n: float(got[n]) for n in expected} == expected  # exact: every value is a short binary fraction
    assert result.num_steps == 1 and result.learning_rate == lr


def test_scaffold_offset_is_added_to_the_gradient() -> None:
    x = np.array([[1.0]], np.float32)
    data = node_data_from_arrays(x, np.array([0]), x, np.array([0]), classes=2, batch_size=1)
    learner = FlaxLearner(Scalar(), data, optimizer="sgd", lr=0.25)
    learner.fit(1, GradientCorrection(offset={"w": np.array(1.5, np.float32)}))  # "b" omitted: zero offset
    got = learner.get_parameters()
    # w = b = 0 -> logits [0, 0]: g_w = g_b = -1/2.
    assert float(got["w"]) == 0.0 - 0.25 * (-0.5 + 1.5)
    assert float(got["b"]) == 0.0 - 0.25 * (-0.5)


def test_correction_for_unknown_parameter_is_rejected() -> None:
    learner = FlaxLearner(TinyMLP(8, 3), _blobs())
    with pytest.raises(ValueError, match="nope"):
        learner.fit(1, GradientCorrection(offset={"nope": np.zeros(1, np.float32)}))


def test_train_step_compiles_once_across_rounds_and_corrections() -> None:
    data = _blobs(num_train=64, batch_size=16)  # every batch has the same shape
    learner = FlaxLearner(TinyMLP(8, 3, hidden=13), data, optimizer="sgd", lr=0.1)
    learner.fit(1)
    learner.evaluate()
    first = learner.trace_counts
    params = learner.get_parameters()
    for round_ in range(3):
        offset = {n: np.full(params[n].shape, round_, params[n].dtype) for n in learner.trainable_names()}
        learner.fit(2, GradientCorrection(scale=0.1 * round_, offset=offset))
        learner.set_parameters(params)
        learner.evaluate()
    assert first == {"train": 1, "eval": 1}
    assert learner.trace_counts == first


# ------------------------------------------------------------------ interruption


def test_interrupt_from_another_thread_stops_after_the_current_step() -> None:
    reached, sent = threading.Event(), threading.Event()
    calls = []

    def on_step() -> None:  # runs inside the compiled train step
        calls.append(1)
        if len(calls) == 3:
            reached.set()
            sent.wait(DEADLINE)  # hold step 3 until interrupt() was called

    learner_box: list[FlaxLearner] = []

    def interrupter() -> None:
        if reached.wait(DEADLINE):
            learner_box[0].interrupt()
        sent.set()

    learner = FlaxLearner(Probe(8, 3, on_step), _blobs(), optimizer="sgd", lr=0.1)
    learner_box.append(learner)
    with ThreadPoolExecutor(1) as pool:
        done = pool.submit(interrupter)
        result = learner.fit(1_000_000)
        done.result(timeout=DEADLINE)
    assert result.interrupted
    assert result.num_steps == 3
    assert len(calls) == 3

    # The learner stays usable, and a stale interrupt() does not abort the next fit.
    learner.interrupt()
    reached.clear()
    again = learner.fit(1)
    assert not again.interrupted and again.num_steps == 4  # 64 samples / batch 16


# ------------------------------------------------------------------ results, reproducibility, concurrency


def test_fit_result_counts_steps_and_reports_metrics() -> None:
    data = _blobs(num_train=70, batch_size=16)
    learner = FlaxLearner(TinyMLP(8, 3), data, optimizer="adam", lr=0.02)
    result = learner.fit(3)
    assert result.num_steps == 3 * math.ceil(70 / 16)
    assert result.num_samples == 70
    assert result.learning_rate == 0.02
    assert set(result.metrics) == {"loss", "accuracy"} and 0.0 <= result.metrics["accuracy"] <= 1.0
    metrics = learner.evaluate()
    # Accuracy checked against a prediction made outside the learner (the synced model).
    x, y = data.numpy("test")
    expected = float(np.mean(np.argmax(np.asarray(learner.model(x)), axis=-1) == y))
    assert metrics["accuracy"] == pytest.approx(expected)


def _train(seed: int, data, start=None) -> dict[str, np.ndarray]:
    learner = FlaxLearner(TinyMLP(8, 3, dropout=0.2, seed=7), data, seed=seed, optimizer="adam", lr=0.01)
    if start is not None:
        learner.set_parameters(start)
    for _ in range(2):
        learner.fit(1)
    return learner.get_parameters()


def test_same_seed_is_bitwise_reproducible_and_seed_matters() -> None:
    data = _blobs(num_train=50, batch_size=8)
    assert parameters_equal(_train(1, data), _train(1, data))
    assert not parameters_equal(_train(1, data), _train(2, data))  # the seed shuffles the data


def test_concurrent_learners_in_threads_match_sequential_runs() -> None:
    datas = [_blobs(num_train=48, batch_size=8, seed=s) for s in range(4)]
    sequential = [_train(s, datas[s]) for s in range(4)]
    barrier = threading.Barrier(4, timeout=DEADLINE)

    def run(s: int) -> dict[str, np.ndarray]:
        barrier.wait()
        return _train(s, datas[s])

    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(run, range(4), timeout=DEADLINE))
    for seq, conc in zip(sequential, concurrent):
        assert parameters_equal(seq, conc)


# ------------------------------------------------------------------ optimizer options


def test_optimizer_state_reset_or_keep() -> None:
    data = _blobs()

    def pair(policy: str, optimizer: str) -> list[dict[str, np.ndarray]]:
        learner = FlaxLearner(TinyMLP(8, 3), data, optimizer=optimizer, lr=0.05, optimizer_state=policy)
        out = []
        for _ in range(2):
            learner.fit(1)
            out.append(learner.get_parameters())
        return out

    reset, keep = pair("reset", "adam"), pair("keep", "adam")
    assert parameters_equal(reset[0], keep[0])  # same first fit
    assert not parameters_equal(reset[1], keep[1])  # Adam's moments carried over, or not
    # Plain SGD has no state: the policy makes no difference.
    assert parameters_equal(pair("reset", "sgd")[1], pair("keep", "sgd")[1])


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop", "adagrad"])
def test_every_optimizer_learns(optimizer: str) -> None:
    data = _blobs(num_train=96)
    learner = FlaxLearner(TinyMLP(8, 3), data, optimizer=optimizer, lr=0.05, momentum=0.5, weight_decay=1e-4)
    before = learner.evaluate()["loss"]
    learner.fit(5)
    assert learner.evaluate()["loss"] < before


def test_bad_options_and_models_are_explained() -> None:
    data = _blobs()
    with pytest.raises(ValueError, match=r"unknown flax learner option.*learning_rate.*accepted: .*lr"):
        FlaxLearner(TinyMLP(8, 3), data, learning_rate=0.1)
    with pytest.raises(ValueError, match=r"optimizer 'lbfgs'.*sgd, adam"):
        FlaxLearner(TinyMLP(8, 3), data, optimizer="lbfgs")
    with pytest.raises(ValueError, match=r"optimizer_state 'sometimes'.*reset, keep"):
        FlaxLearner(TinyMLP(8, 3), data, optimizer_state="sometimes")
    with pytest.raises(TypeError, match=r"flax\.nnx\.Module.*dict"):
        FlaxLearner({"w": 1}, data)
