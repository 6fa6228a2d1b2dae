"""FedProx and SCAFFOLD: their training callbacks and aggregation, by hand, framework-free."""

from __future__ import annotations

import numpy as np
import pytest

from p2pfl.aggregation import AggregationError, FedAvg
from p2pfl.learning.learner import FitContext, FitResult, GradientCorrection
from p2pfl.parameters import Update, parameters_equal
from p2pfl_aggregators.drift import CONTROL_KEY, DELTA_KEY, FedProx, Scaffold


def ctx(global_w: float, extras: dict | None = None, node: str = "a") -> FitContext:
    return FitContext(
        node_id=node, round=1, global_parameters={"w": np.array([global_w])}, extras=extras or {}, trainable=["w"]
    )


def sgd(w: float, target: float, steps: int, lr: float, correction: GradientCorrection) -> float:
    """A tiny learner: loss (w - target)^2 / 2, plain SGD, correction applied as core specifies."""
    for _ in range(steps):
        grad = (w - target) + correction.scale * w + float(correction.offset["w"][0])
        w = w - lr * grad
    return w


# --------------------------------------------------------------------------- FedProx


def test_fedprox_correction_is_the_proximal_gradient():
    correction = FedProx(mu=0.5).training_callback().on_fit_start(ctx(3.0))
    assert correction.scale == 0.5
    assert correction.offset["w"].tolist() == [-1.5]  # -mu * w_global
    # one step from w=1 with no data gradient: w -= lr * mu * (w - w_global) = 1 + 0.1 = 1.1
    assert sgd(1.0, 1.0, 1, 0.1, correction) == pytest.approx(1.1, abs=1e-15)


def test_fedprox_corrects_trainable_tensors_only():
    c = FitContext(
        node_id="a", round=1, global_parameters={"w": np.array([2.0]), "bn.running_mean": np.array([5.0])}, trainable=[]
    )
    assert set(FedProx(mu=1.0).training_callback().on_fit_start(c).offset) == {"w"}  # statistics rule fallback
    c.trainable = ["bn.running_mean"]
    assert set(FedProx(mu=1.0).training_callback().on_fit_start(c).offset) == {"bn.running_mean"}
    assert FedProx(mu=0.0).training_callback().on_fit_start(c) is None


def test_fedprox_aggregates_exactly_like_fedavg():
    rng = np.random.default_rng(0)
    ups = [
        Update({"w": rng.normal(size=(4, 3)).astype(np.float32), "n": np.array(i, np.int64)}, i + 1, {f"n{i}"}, 1)
        for i in range(4)
    ]
    assert parameters_equal(FedProx(mu=0.1).aggregate(ups).parameters, FedAvg().aggregate(ups).parameters)
    assert FedProx.supports_partial is True
    partial = FedProx().aggregate([FedProx().aggregate(ups[:2]), *ups[2:]])
    np.testing.assert_allclose(partial.parameters["w"], FedAvg().aggregate(ups).parameters["w"], rtol=1e-6)
    with pytest.raises(ValueError, match="mu"):
        FedProx(mu=-1)


# --------------------------------------------------------------------------- SCAFFOLD


def fit(node: Scaffold, start: float, extras: dict, y: float, steps: int, lr: float, samples: int = 10) -> Update:
    """Run the node's callback around a pretended local fit that ended at ``y``."""
    callback = node.training_callback()
    c = ctx(start, extras)
    callback.on_fit_start(c)
    extra = callback.on_fit_end(
        c, {"w": np.array([y])}, FitResult(num_samples=samples, num_steps=steps, learning_rate=lr)
    )
    return Update({"w": np.array([y])}, samples, {c.node_id + str(id(node))}, 1, extras=extra)


def test_scaffold_one_round_by_hand():
    a, b = Scaffold(), Scaffold()
    # x = 1, c = c_i = 0. Node a: K=2, lr=0.1, ends at 0.6 -> c_a = (1 - 0.6) / 0.2 = 2
    # node b: K=4, lr=0.1, ends at 1.2 -> c_b = (1 - 1.2) / 0.4 = -0.5
    ua = fit(a, 1.0, {}, 0.6, 2, 0.1)
    ub = fit(b, 1.0, {}, 1.2, 4, 0.1)
    assert ua.extras[DELTA_KEY]["w"][0] == pytest.approx(2.0, rel=1e-12)
    assert ub.extras[DELTA_KEY]["w"][0] == pytest.approx(-0.5, rel=1e-12)
    assert a.training_callback().local["w"][0] == pytest.approx(2.0, rel=1e-12)
    # x = 1 + mean(-0.4, 0.2) = 0.9; c = 0 + (2/2) * mean(2, -0.5) = 0.75
    out_a = a.aggregate([ua, ub], {"w": np.array([1.0])})
    out_b = b.aggregate([ua, ub], {"w": np.array([1.0])})
    assert out_a.parameters["w"][0] == pytest.approx(0.9, rel=1e-12)
    assert out_a.extras[CONTROL_KEY]["w"][0] == pytest.approx(0.75, rel=1e-12)
    # every node ends the round with the same model and the same c, bitwise
    assert parameters_equal(out_a.parameters, out_b.parameters)
    assert parameters_equal(out_a.extras[CONTROL_KEY], out_b.extras[CONTROL_KEY])


def test_scaffold_global_step_and_partial_participation():
    ua = fit(Scaffold(), 1.0, {}, 0.6, 2, 0.1)
    ub = fit(Scaffold(), 1.0, {}, 1.2, 4, 0.1)
    out = Scaffold(eta_g=0.5, num_nodes=4).aggregate([ua, ub], {"w": np.array([1.0])})
    assert out.parameters["w"][0] == pytest.approx(0.95, rel=1e-12)  # 1 + 0.5 * (-0.1)
    assert out.extras[CONTROL_KEY]["w"][0] == pytest.approx(0.375, rel=1e-12)  # (2/4) * 0.75
    with pytest.raises(AggregationError, match="num_nodes=1"):
        Scaffold(num_nodes=1).aggregate([ua, ub], {"w": np.array([1.0])})


def test_scaffold_second_round_correction_and_variates_by_hand():
    a, b = Scaffold(), Scaffold()
    ua = fit(a, 1.0, {}, 0.6, 2, 0.1)
    ub = fit(b, 1.0, {}, 1.2, 4, 0.1)
    first = b.aggregate([ua, ub], {"w": np.array([1.0])})
    # round 2: correction c - c_i: 0.75 - 2 = -1.25 on a, 0.75 + 0.5 = 1.25 on b
    assert a.training_callback().on_fit_start(ctx(0.9, first.extras)).offset["w"][0] == pytest.approx(-1.25)
    correction = b.training_callback().on_fit_start(ctx(0.9, first.extras))
    assert correction.offset["w"][0] == pytest.approx(1.25)
    # b trains one real step (loss (w - 1)^2 / 2, lr 0.1) from 0.9: g = -0.1 + 1.25, y = 0.9 - 0.115 = 0.785
    y = sgd(0.9, 1.0, 1, 0.1, correction)
    assert y == pytest.approx(0.785)
    extras = b.training_callback().on_fit_end(
        ctx(0.9, first.extras), {"w": np.array([y])}, FitResult(num_samples=10, num_steps=1, learning_rate=0.1)
    )
    # option II: c_b+ = c_b - c + (x - y) / (K lr) = -0.5 - 0.75 + 1.15 = -0.1: the corrected gradient
    assert b.training_callback().local["w"][0] == pytest.approx(-0.1)
    assert extras[DELTA_KEY]["w"][0] == pytest.approx(0.4)


def test_scaffold_needs_the_learning_rate_and_its_extras():
    node = Scaffold()
    callback = node.training_callback()
    c = ctx(1.0)
    callback.on_fit_start(c)
    with pytest.raises(ValueError, match="learning_rate"):
        callback.on_fit_end(c, {"w": np.array([0.5])}, FitResult(num_samples=1, num_steps=3))
    # an interrupted fit without any step keeps c_i: zero delta
    extras = callback.on_fit_end(c, {"w": np.array([1.0])}, FitResult(num_samples=1, num_steps=0))
    assert extras[DELTA_KEY]["w"].tolist() == [0.0]
    bare = Update({"w": np.array([1.0])}, 1, {"x"}, 1)
    with pytest.raises(AggregationError, match="global_parameters"):
        node.aggregate([bare])


def test_scaffold_update_without_delta_counts_as_unchanged(caplog):
    ua = fit(Scaffold(), 1.0, {}, 0.6, 2, 0.1)  # delta_c = 2
    bare = Update({"w": np.array([1.2])}, 10, {"zz"}, 1)
    with caplog.at_level("WARNING"):
        out = Scaffold().aggregate([ua, bare], {"w": np.array([1.0])})
    assert "SCAFFOLD training callback" in caplog.text
    assert out.extras[CONTROL_KEY]["w"][0] == pytest.approx(1.0)  # (2 + 0) / 2
    # nothing known at all: no control variate travels
    assert Scaffold().aggregate([bare], {"w": np.array([1.0])}).extras == {}


def test_scaffold_state_round_trip_and_statistics():
    node = Scaffold()
    u = fit(node, 1.0, {}, 0.6, 2, 0.1)
    node.aggregate([u], {"w": np.array([1.0])})
    other = Scaffold()
    other.set_state(node.get_state())
    assert parameters_equal(other.control, node.control)
    # statistics take the sample-weighted mean and stay integer
    g = {"w": np.array([1.0]), "steps": np.array(4, np.int64)}
    ups = []
    for i, (steps, samples) in enumerate([(4, 1), (9, 3)]):
        u = fit(Scaffold(), 1.0, {}, 0.5, 1, 0.5, samples)
        ups.append(
            Update({"w": u.parameters["w"], "steps": np.array(steps, np.int64)}, samples, {f"s{i}"}, 1, extras=u.extras)
        )
    out = Scaffold().aggregate(ups, g)
    assert out.parameters["steps"].dtype == np.int64 and int(out.parameters["steps"]) == 8  # rint(7.75)
