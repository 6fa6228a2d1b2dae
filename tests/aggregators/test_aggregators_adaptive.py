"""Server optimizers (FedAvgM, FedAdagrad, FedAdam, FedYogi) against hand-computed rounds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from p2pfl.aggregation import AggregationError
from p2pfl.learning.learner import FitContext
from p2pfl.parameters import Update, parameters_equal
from p2pfl_aggregators.adaptive import FedAdagrad, FedAdam, FedAvgM, FedYogi

TAU = 1e-3


def upd(i: int, samples: int, **params: object) -> Update:
    return Update({k: np.asarray(v, dtype=np.float64) for k, v in params.items()}, samples, {f"n{i}"}, 1)


X0 = {"w": np.array([1.0, 2.0])}
# weighted mean: ([2,2]*1 + [4,2]*3) / 4 = [3.5, 2]  ->  pseudo-gradient D1 = [2.5, 0]
ROUND1 = [upd(0, 1, w=[2.0, 2.0]), upd(1, 3, w=[4.0, 2.0])]
D1 = (2.5, 0.0)


def round2(x1: np.ndarray) -> list[Update]:
    """Updates of round 2 chosen so that D2 = [0, 1] from x1."""
    step = np.array([0.0, 1.0])
    return [upd(0, 1, w=x1 + step), upd(1, 1, w=x1 + step)]


def test_fedavgm_two_rounds_by_hand():
    agg = FedAvgM(eta=1.0, momentum=0.9)
    x1 = agg.aggregate(ROUND1, X0).parameters["w"]
    assert x1.tolist() == [3.5, 2.0]  # m = D1
    x2 = agg.aggregate(round2(x1), {"w": x1}).parameters["w"]
    assert x2.tolist() == [3.5 + 0.9 * 2.5, 3.0]  # m = 0.9 * D1 + D2 = [2.25, 1]


def adaptive_by_hand(rule: str, eta: float, rounds: list[tuple[float, float]]) -> list[list[float]]:
    """The paper's Algorithm 2, written out per coordinate with math (no numpy)."""
    x = [1.0, 2.0]
    m = [0.0, 0.0]
    v = [TAU**2, TAU**2]
    models = []
    for delta in rounds:
        for j in range(2):
            d = delta[j]
            m[j] = 0.9 * m[j] + 0.1 * d
            if rule == "adagrad":
                v[j] = v[j] + d * d
            elif rule == "adam":
                v[j] = 0.99 * v[j] + 0.01 * d * d
            else:
                sign = (v[j] - d * d > 0) - (v[j] - d * d < 0)
                v[j] = v[j] - 0.01 * d * d * sign
            x[j] = x[j] + eta * m[j] / (math.sqrt(v[j]) + TAU)
        models.append(list(x))
    return models


@pytest.mark.parametrize(("cls", "rule"), [(FedAdagrad, "adagrad"), (FedAdam, "adam"), (FedYogi, "yogi")])
def test_adaptive_two_rounds_by_hand(cls, rule):
    agg = cls(eta=0.1, beta1=0.9, beta2=0.99, tau=TAU)
    x1 = agg.aggregate(ROUND1, X0).parameters["w"]
    x2 = agg.aggregate(round2(x1), {"w": x1}).parameters["w"]
    expected = adaptive_by_hand(rule, 0.1, [D1, (0.0, 1.0)])
    np.testing.assert_allclose(x1, expected[0], rtol=1e-12)
    np.testing.assert_allclose(x2, expected[1], rtol=1e-12)


def test_first_fedadam_step_written_out():
    # m = 0.1 * 2.5 = 0.25; v = 0.99 * 1e-6 + 0.01 * 6.25; x = 1 + 0.1 * m / (sqrt(v) + 1e-3)
    x1 = FedAdam(eta=0.1).aggregate(ROUND1, X0).parameters["w"]
    assert x1[0] == pytest.approx(1 + 0.1 * 0.25 / (math.sqrt(0.99e-6 + 0.0625) + 1e-3), rel=1e-12)
    assert x1[1] == 2.0  # zero pseudo-gradient: no move


def test_published_defaults():
    assert (FedAdam().eta, FedAdam().beta1, FedAdam().beta2, FedAdam().tau) == (0.01, 0.9, 0.99, 1e-3)
    assert (FedYogi().eta, FedYogi().tau) == (0.01, 1e-3)
    assert (FedAdagrad().eta, FedAdagrad().tau) == (0.1, 1e-3)
    assert (FedAvgM().eta, FedAvgM().momentum) == (1.0, 0.9)


@pytest.mark.parametrize("cls", [FedAvgM, FedAdagrad, FedAdam, FedYogi])
def test_needs_global_parameters(cls):
    with pytest.raises(AggregationError, match="needs global_parameters"):
        cls().aggregate(ROUND1)
    with pytest.raises(AggregationError, match="global_parameters"):
        cls().aggregate(ROUND1, {"w": np.zeros(3)})


@pytest.mark.parametrize("cls", [FedAvgM, FedAdagrad, FedAdam, FedYogi])
def test_state_travels_with_the_model_and_through_get_state(cls):
    """A node that did not aggregate round 1 ends round 2 bitwise like one that did."""
    veteran = cls()
    first = veteran.aggregate(ROUND1, X0)
    assert set(first.extras) == {f"{cls.name}.{k}" for k in cls.moments}
    x1 = first.parameters["w"]
    expected = veteran.aggregate(round2(x1), {"w": x1})

    # through the model's extras, as the next round's training callback sees them
    newcomer = cls()
    ctx = FitContext(node_id="n9", round=2, global_parameters={"w": x1}, extras=first.extras, trainable=["w"])
    assert newcomer.training_callback().on_fit_start(ctx) is None
    got = newcomer.aggregate(round2(x1), {"w": x1})
    assert parameters_equal(got.parameters, expected.parameters)
    for key in expected.extras:
        assert parameters_equal(got.extras[key], expected.extras[key])

    # through get_state / set_state (a late joiner)
    joiner = cls()
    replay = cls()
    replay.aggregate(ROUND1, X0)
    joiner.set_state(replay.get_state())
    assert parameters_equal(joiner.aggregate(round2(x1), {"w": x1}).parameters, expected.parameters)


def test_state_is_float32_for_float32_models_and_set_state_validates():
    x0 = {"w": np.array([1.0, 2.0], np.float32)}
    ups = [Update({"w": np.array([2.0, 2.0], np.float32)}, 1, {"a"}, 1)]
    agg = FedAdam()
    out = agg.aggregate(ups, x0)
    assert out.parameters["w"].dtype == np.float32
    assert out.extras["fedadam.m"]["w"].dtype == np.float32
    with pytest.raises(ValueError, match="unknown entries"):
        agg.set_state({"momentum": {}})


def test_statistics_are_averaged_not_optimized():
    x0 = {"w": np.array([0.0]), "bn.running_mean": np.array([0.0]), "bn.num_batches_tracked": np.array(10)}
    ups = [
        Update(
            {"w": np.array([1.0]), "bn.running_mean": np.array([2.0]), "bn.num_batches_tracked": np.array(10)},
            1,
            {"a"},
            1,
        ),
        Update(
            {"w": np.array([1.0]), "bn.running_mean": np.array([4.0]), "bn.num_batches_tracked": np.array(13)},
            3,
            {"b"},
            1,
        ),
    ]
    out = FedAdam(eta=0.1).aggregate(ups, x0)
    assert out.parameters["bn.running_mean"].tolist() == [3.5]  # (2 + 3 * 4) / 4
    assert out.parameters["bn.num_batches_tracked"].dtype == x0["bn.num_batches_tracked"].dtype
    assert int(out.parameters["bn.num_batches_tracked"]) == 12  # rint(12.25)
    assert set(out.extras["fedadam.m"]) == {"w"}
    # with the name rule disabled, running_mean goes through the optimizer like a weight
    out = FedAdam(eta=0.1, statistics=[]).aggregate(ups, x0)
    assert set(out.extras["fedadam.m"]) == {"w", "bn.running_mean"}


@pytest.mark.parametrize("cls", [FedAvgM, FedAdagrad, FedAdam, FedYogi])
def test_parameter_validation(cls):
    with pytest.raises(ValueError, match="eta"):
        cls(eta=0)
    assert cls.supports_partial is False
