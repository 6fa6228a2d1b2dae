"""The RDP accountant against independent computations.

* Gaussian mechanism: closed form RDP ``T α / (2 z²)``, converted by hand, minimised over a
  dense grid of orders; and the classic bound ``T/(2z²) + sqrt(2 T log(1/δ)) / z``.
* Sampled Gaussian mechanism: the RDP is ``log(A_α) / (α − 1)`` with
  ``A_α = E_{x~N(0,σ²)}[((1 − q) + q·exp((2x − 1) / (2σ²)))^α]`` (Mironov et al., 2019),
  integrated numerically here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from p2pfl_compression.accountant import DEFAULT_ORDERS, RDPAccountant, epsilon_from_rdp, gaussian_rdp, log_erfc


def by_hand_epsilon(steps: int, z: float, delta: float, alphas: np.ndarray) -> float:
    rdp = steps * alphas / (2 * z**2)
    return float(np.min(rdp + np.log((alphas - 1) / alphas) - (np.log(delta) + np.log(alphas)) / (alphas - 1)))


@pytest.mark.parametrize("z, steps, delta", [(1.0, 1, 1e-5), (1.1, 100, 1e-5), (4.0, 1000, 1e-6), (0.6, 10, 1e-3)])
def test_gaussian_epsilon_matches_closed_form(z, steps, delta):
    acc = RDPAccountant(z)
    acc.step(steps)
    eps = acc.epsilon(delta)
    optimum = by_hand_epsilon(steps, z, delta, np.linspace(1.0001, 400, 2_000_000))
    assert optimum - 1e-9 <= eps <= optimum * 1.03  # the default orders are a grid
    classic = steps / (2 * z**2) + math.sqrt(2 * steps * math.log(1 / delta)) / z
    assert eps <= classic


def test_single_order_is_exact():
    acc = RDPAccountant(2.0, orders=[5.0])
    acc.step(7)
    assert math.isclose(acc.epsilon(1e-5), by_hand_epsilon(7, 2.0, 1e-5, np.array([5.0])), rel_tol=1e-13)


def sampled_rdp_by_integration(q: float, sigma: float, alpha: float) -> float:
    x = np.linspace(-40 * sigma, 40 * sigma + alpha, 2_000_001)
    log_density = -(x**2) / (2 * sigma**2) - math.log(sigma * math.sqrt(2 * math.pi))
    log_ratio = np.logaddexp(math.log1p(-q), math.log(q) + (2 * x - 1) / (2 * sigma**2))
    log_f = log_density + alpha * log_ratio
    peak = log_f.max()
    log_a = peak + math.log(np.trapezoid(np.exp(log_f - peak), x))
    return log_a / (alpha - 1)


@pytest.mark.parametrize(
    "q, sigma, alpha",
    [
        (0.01, 1.1, 2.0),
        (0.1, 1.0, 8.0),
        (0.3, 2.0, 32.0),
        (0.05, 0.8, 5.0),
        (0.01, 1.1, 1.5),
        (0.1, 1.0, 3.7),
        (0.3, 2.0, 10.5),
        (0.2, 0.7, 1.1),
    ],
)
def test_sampled_gaussian_rdp_matches_numerical_integration(q, sigma, alpha):
    assert math.isclose(gaussian_rdp(sigma, [alpha], q)[0], sampled_rdp_by_integration(q, sigma, alpha), rel_tol=1e-6)


def test_sampling_amplifies_and_noise_helps():
    def eps(z, q, steps=50):
        acc = RDPAccountant(z, sample_rate=q)
        acc.step(steps)
        return acc.epsilon(1e-5)

    assert eps(1.0, 0.1) < eps(1.0, 0.5) < eps(1.0, 1.0)
    assert eps(2.0, 1.0) < eps(1.0, 1.0)
    assert eps(1.0, 1.0, 10) < eps(1.0, 1.0, 20)
    assert math.isclose(gaussian_rdp(1.0, [3.0], 1.0)[0], 1.5)  # q = 1 is the plain Gaussian


def test_epsilon_from_rdp_edge_cases():
    orders = list(DEFAULT_ORDERS)
    # zero RDP still costs the conversion term at the largest order (63): small but positive
    assert 0 < epsilon_from_rdp(orders, np.zeros(len(orders)), 1e-5)[0] < 0.2
    assert RDPAccountant(1.0).epsilon(1e-5) == 0.0  # no release at all: nothing spent
    assert epsilon_from_rdp(orders, np.full(len(orders), np.inf), 1e-5)[0] == math.inf
    with pytest.raises(ValueError):
        RDPAccountant(1.0, orders=[1.0])


def test_log_erfc_matches_the_direct_formula_and_continues_it():
    for x in (-3.0, 0.0, 1.0, 5.0, 20.0):
        assert math.isclose(log_erfc(x), math.log(math.erfc(x)), rel_tol=1e-12)
    # beyond where erfc underflows: the asymptotic series, continuous with the direct value
    assert math.isclose(log_erfc(25.0 - 1e-9), log_erfc(25.0), rel_tol=1e-9)
    assert log_erfc(100.0) < log_erfc(50.0) < log_erfc(30.0)
