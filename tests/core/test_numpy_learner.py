"""The numpy reference learner: conformance suite plus updates checked by hand."""

from __future__ import annotations

import math

import datasets
import numpy as np
import pytest

from p2pfl.learning import GradientCorrection, NodeData
from p2pfl.learning.numpy_learner import NumpyLearner, NumpyModel
from p2pfl.parameters import ParameterMismatchError, parameters_equal
from p2pfl.testing import LearnerConformance

# --------------------------------------------------------------------------- conformance


class TestNumpySoftmaxConformance(LearnerConformance):
    def make_learner(self, node_data: NodeData, seed: int) -> NumpyLearner:
        model = NumpyModel(self.data_options["num_features"], node_data.num_classes, seed=seed)
        return NumpyLearner(model, node_data, seed=seed)


class TestNumpyMLPConformance(LearnerConformance):
    data_options = {**LearnerConformance.data_options, "input_shape": (2, 4)}  # flattened by the learner

    def make_learner(self, node_data: NodeData, seed: int) -> NumpyLearner:
        model = NumpyModel(8, node_data.num_classes, hidden=(16, 8), seed=seed)
        return NumpyLearner(model, node_data, seed=seed, lr=0.05, momentum=0.5, weight_decay=1e-4)


# --------------------------------------------------------------------------- hand-computed steps

X = [[1.0, 2.0], [-1.0, 0.5], [0.5, -1.5]]
Y = [0, 1, 1]
W0 = [[0.1, -0.2], [0.3, 0.4]]
B0 = [0.05, -0.05]


def tiny_data(batch_size: int = 3) -> NodeData:
    ds = datasets.Dataset.from_dict({"x": X, "label": Y})
    return NodeData(train=ds, test=ds, features="x", label="label", num_classes=2, batch_size=batch_size)


def tiny_learner(**options: float) -> NumpyLearner:
    learner = NumpyLearner(NumpyModel(2, 2, seed=0), tiny_data(), seed=0, **options)
    learner.set_parameters({"fc0.weight": np.array(W0, np.float32), "fc0.bias": np.array(B0, np.float32)})
    return learner


def hand_grads(w: list[list[float]], b: list[float]) -> tuple[list[list[float]], list[float], float]:
    """Gradient of the mean cross-entropy of softmax(x @ w + b), written out element by element."""
    gw, gb, loss = [[0.0, 0.0], [0.0, 0.0]], [0.0, 0.0], 0.0
    for x, y in zip(X, Y):
        z = [x[0] * w[0][k] + x[1] * w[1][k] + b[k] for k in range(2)]
        e = [math.exp(v) for v in z]
        p = [v / sum(e) for v in e]
        loss -= math.log(p[y]) / len(X)
        for k in range(2):
            dz = (p[k] - (1.0 if k == y else 0.0)) / len(X)
            gb[k] += dz
            for j in range(2):
                gw[j][k] += x[j] * dz
    return gw, gb, loss


def sgd(w: list[list[float]], b: list[float], gw: list[list[float]], gb: list[float], lr: float):
    return [[w[j][k] - lr * gw[j][k] for k in range(2)] for j in range(2)], [b[k] - lr * gb[k] for k in range(2)]


def test_one_sgd_step_matches_hand_computation() -> None:
    learner = tiny_learner(lr=0.5)
    result = learner.fit(1)  # batch size 3 = the whole train split: exactly one step
    gw, gb, _ = hand_grads(W0, B0)
    w1, b1 = sgd(W0, B0, gw, gb, 0.5)
    params = learner.get_parameters()
    np.testing.assert_allclose(params["fc0.weight"], w1, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(params["fc0.bias"], b1, rtol=1e-6, atol=1e-7)
    assert (result.num_steps, result.num_samples, result.learning_rate) == (1, 3, 0.5)


def test_fedprox_correction_gives_the_exact_proximal_step() -> None:
    mu, lr = 0.7, 0.5
    centre_w = [[0.6, 0.3], [-0.2, 0.9]]  # the round's global model, away from the starting point
    centre_b = [0.0, 0.2]
    offset = {"fc0.weight": -mu * np.array(centre_w, np.float32), "fc0.bias": -mu * np.array(centre_b, np.float32)}
    learner = tiny_learner(lr=lr)
    learner.fit(1, GradientCorrection(scale=mu, offset=offset))

    gw, gb, _ = hand_grads(W0, B0)
    prox_w = [[gw[j][k] + mu * (W0[j][k] - centre_w[j][k]) for k in range(2)] for j in range(2)]
    prox_b = [gb[k] + mu * (B0[k] - centre_b[k]) for k in range(2)]
    w1, b1 = sgd(W0, B0, prox_w, prox_b, lr)
    params = learner.get_parameters()
    np.testing.assert_allclose(params["fc0.weight"], w1, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(params["fc0.bias"], b1, rtol=1e-6, atol=1e-6)

    # Second method: the proximal term shifts the plain step by exactly -lr * mu * (w - centre).
    plain = tiny_learner(lr=lr)
    plain.fit(1)
    shift = -lr * mu * (np.array(W0) - np.array(centre_w))
    np.testing.assert_allclose(params["fc0.weight"] - plain.get_parameters()["fc0.weight"], shift, atol=1e-6)


def test_momentum_and_weight_decay_match_hand_computation() -> None:
    lr, m, wd = 0.3, 0.9, 0.01
    learner = tiny_learner(lr=lr, momentum=m, weight_decay=wd)
    learner.fit(2)  # two steps

    w, b = W0, B0
    vw, vb = [[0.0, 0.0], [0.0, 0.0]], [0.0, 0.0]
    for _ in range(2):
        gw, gb, _ = hand_grads(w, b)
        vw = [[m * vw[j][k] + gw[j][k] + wd * w[j][k] for k in range(2)] for j in range(2)]
        vb = [m * vb[k] + gb[k] + wd * b[k] for k in range(2)]
        w, b = sgd(w, b, vw, vb, lr)
    params = learner.get_parameters()
    np.testing.assert_allclose(params["fc0.weight"], w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(params["fc0.bias"], b, rtol=1e-5, atol=1e-6)


def test_evaluate_matches_hand_computation() -> None:
    learner = tiny_learner()
    _, _, loss = hand_grads(W0, B0)
    predictions = [max(range(2), key=lambda k, x=x: x[0] * W0[0][k] + x[1] * W0[1][k] + B0[k]) for x in X]
    accuracy = sum(p == y for p, y in zip(predictions, Y)) / len(Y)
    metrics = learner.evaluate()
    assert metrics["loss"] == pytest.approx(loss, rel=1e-6)
    assert metrics["accuracy"] == accuracy
    assert metrics["num_samples"] == 3


def test_mlp_gradients_match_finite_differences() -> None:
    rng = np.random.default_rng(3)
    model = NumpyModel(5, 3, hidden=(7, 4), seed=1)
    x = rng.normal(size=(6, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=6)
    _, _, grads = model.loss_and_grads(x, y)

    params64 = {n: v.astype(np.float64) for n, v in model.params.items()}

    def loss64(params: dict[str, np.ndarray]) -> float:  # an independent float64 forward pass
        a = x.astype(np.float64)
        for i in range(3):
            a = a @ params[f"fc{i}.weight"] + params[f"fc{i}.bias"]
            if i < 2:
                a = np.maximum(a, 0.0)
        a = a - a.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(a).sum(axis=1)) - a[np.arange(6), y]))

    eps = 1e-6
    for name, value in params64.items():
        numeric = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            plus, minus = dict(params64), dict(params64)
            plus[name], minus[name] = value.copy(), value.copy()
            plus[name][idx] += eps
            minus[name][idx] -= eps
            numeric[idx] = (loss64(plus) - loss64(minus)) / (2 * eps)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-3, atol=1e-5, err_msg=name)


# --------------------------------------------------------------------------- seeding


def test_successive_fits_shuffle_differently_but_reproducibly(make_node_data) -> None:
    data = make_node_data(num_train=64, batch_size=8)

    def learner() -> NumpyLearner:
        return NumpyLearner(NumpyModel(8, 3, seed=0), data, seed=5)

    start = learner().get_parameters()
    a = learner()
    a.fit(1)
    a.set_parameters(start)
    a.fit(1)  # same start, second fit: the batch order has moved on
    b = learner()
    b.fit(1)
    assert not parameters_equal(a.get_parameters(), b.get_parameters())

    c = learner()
    c.fit(1)
    c.set_parameters(start)
    c.fit(1)
    assert parameters_equal(a.get_parameters(), c.get_parameters())


def test_model_init_is_seeded() -> None:
    assert parameters_equal(NumpyModel(4, 3, (5,), seed=2).params, NumpyModel(4, 3, (5,), seed=2).params)
    assert not parameters_equal(NumpyModel(4, 3, (5,), seed=2).params, NumpyModel(4, 3, (5,), seed=3).params)
    assert list(NumpyModel(4, 3, (5,)).params) == ["fc0.weight", "fc0.bias", "fc1.weight", "fc1.bias"]
    assert all(v.dtype == np.float32 for v in NumpyModel(4, 3, (5,)).params.values())


# --------------------------------------------------------------------------- errors


def test_set_parameters_casts_floats_and_rejects_integers() -> None:
    learner = tiny_learner()
    params = learner.get_parameters()
    as64 = {n: v.astype(np.float64) for n, v in params.items()}
    learner.set_parameters(as64)
    assert all(v.dtype == np.float32 for v in learner.get_parameters().values())
    with pytest.raises(ParameterMismatchError, match=r"fc0\.bias"):
        learner.set_parameters({**params, "fc0.bias": np.array([1, 2], dtype=np.int64)})


def test_set_parameters_does_not_alias_its_input() -> None:
    learner = tiny_learner()
    params = learner.get_parameters()
    learner.set_parameters(params)
    params["fc0.weight"][...] = 42.0
    assert not np.any(learner.get_parameters()["fc0.weight"] == 42.0)


def test_wrong_input_size_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="2 features but the model expects input_dim=3"):
        NumpyLearner(NumpyModel(3, 2), tiny_data())


def test_labels_out_of_range_are_rejected() -> None:
    ds = datasets.Dataset.from_dict({"x": X, "label": [0, 1, 2]})
    data = NodeData(train=ds, test=ds, features="x", label="label", num_classes=2)
    with pytest.raises(ValueError, match="labels must lie in"):
        NumpyLearner(NumpyModel(2, 2), data)


def test_correction_for_unknown_parameter_is_rejected() -> None:
    learner = tiny_learner()
    with pytest.raises(ParameterMismatchError, match="nope"):
        learner.fit(1, GradientCorrection(offset={"nope": np.zeros(2, np.float32)}))


def test_bad_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="lr > 0"):
        NumpyLearner(NumpyModel(2, 2), tiny_data(), lr=0.0)
    with pytest.raises(TypeError, match="NumpyModel"):
        NumpyLearner(object(), tiny_data())  # type: ignore[arg-type]


def test_registered_as_numpy(p2pfl_plugin_manager) -> None:
    assert p2pfl_plugin_manager.load("learners", "numpy") is NumpyLearner


def test_a_node_without_examples_trains_nothing(make_node_data) -> None:
    learner = NumpyLearner(NumpyModel(8, 3), make_node_data(num_train=0, num_test=0))
    before = learner.get_parameters()
    result = learner.fit(2)
    assert (result.num_samples, result.num_steps, result.interrupted) == (0, 0, False)
    assert parameters_equal(before, learner.get_parameters())
    assert learner.evaluate()["num_samples"] == 0
