"""Rényi-DP accountant for the (subsampled) Gaussian mechanism, in plain Python + numpy.

* Gaussian mechanism with noise multiplier ``z`` (noise std ``z·C`` for sensitivity ``C``):
  RDP of order ``α`` is ``α / (2 z²)`` (Mironov, 2017).
* Sampled with probability ``q`` (Poisson): the RDP of the sampled Gaussian mechanism,
  computed as in Mironov, Talwar & Zhang (2019), "Rényi Differential Privacy of the Sampled
  Gaussian Mechanism", §3.3 — the binomial expansion for integer orders, the two-series
  expression with ``erfc`` for fractional ones. This is the computation used by TensorFlow
  Privacy and Opacus.
* RDP composes additively over releases; ``(ε, δ)`` follows from the conversion of Balle et
  al. (2020), Theorem 21: ``ε = RDP(α) + log((α−1)/α) − (log δ + log α)/(α − 1)``,
  minimised over the orders.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: The orders Opacus uses by default.
DEFAULT_ORDERS: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))


def _log_add(a: float, b: float) -> float:
    """log(e^a + e^b)."""
    lo, hi = min(a, b), max(a, b)
    if lo == -math.inf:
        return hi
    return math.log1p(math.exp(lo - hi)) + hi


def _log_sub(a: float, b: float) -> float:
    """log(e^a − e^b) for a >= b."""
    if b == -math.inf:
        return a
    if a <= b:
        return -math.inf  # equal (or, through rounding, smaller): the difference vanishes
    try:
        return math.log(math.expm1(a - b)) + b
    except OverflowError:
        return a


def log_erfc(x: float) -> float:
    """log(erfc(x)), accurate where erfc underflows (asymptotic series for large x)."""
    if x < 25.0:
        value = math.erfc(x)
        if value > 0:
            return math.log(value)
    return (
        -math.log(math.pi) / 2
        - math.log(x)
        - x * x
        - 0.5 * x**-2
        + 0.625 * x**-4
        - 37.0 / 24.0 * x**-6
        + 353.0 / 64.0 * x**-8
    )


def _log_a_int(q: float, sigma: float, alpha: int) -> float:
    log_a = -math.inf
    for i in range(alpha + 1):
        log_coef = math.log(math.comb(alpha, i)) + i * math.log(q) + (alpha - i) * math.log1p(-q)
        log_a = _log_add(log_a, log_coef + (i * i - i) / (2 * sigma**2))
    return log_a


def _log_a_frac(q: float, sigma: float, alpha: float) -> float:
    log_a0, log_a1 = -math.inf, -math.inf
    z0 = sigma**2 * math.log(1 / q - 1) + 0.5
    i = 0
    log_coef, sign = 0.0, 1.0  # log |C(α, i)| and its sign, updated term by term
    while True:
        j = alpha - i
        log_t0 = log_coef + i * math.log(q) + j * math.log1p(-q)
        log_t1 = log_coef + j * math.log(q) + i * math.log1p(-q)
        log_e0 = math.log(0.5) + log_erfc((i - z0) / (math.sqrt(2) * sigma))
        log_e1 = math.log(0.5) + log_erfc((z0 - j) / (math.sqrt(2) * sigma))
        log_s0 = log_t0 + (i * i - i) / (2 * sigma**2) + log_e0
        log_s1 = log_t1 + (j * j - j) / (2 * sigma**2) + log_e1
        if sign > 0:
            log_a0, log_a1 = _log_add(log_a0, log_s0), _log_add(log_a1, log_s1)
        elif sign < 0:
            log_a0, log_a1 = _log_sub(log_a0, log_s0), _log_sub(log_a1, log_s1)
        i += 1
        if max(log_s0, log_s1) < -30 or i > 10_000:
            break
        factor = (alpha - i + 1) / i  # C(α, i) = C(α, i−1) · (α − i + 1) / i
        sign *= math.copysign(1.0, factor)
        log_coef += math.log(abs(factor))
    return _log_add(log_a0, log_a1)


def gaussian_rdp(noise_multiplier: float, orders: Sequence[float], sample_rate: float = 1.0) -> np.ndarray:
    """RDP of one release of the (sampled) Gaussian mechanism at each order."""
    q, sigma = float(sample_rate), float(noise_multiplier)
    out = []
    for alpha in orders:
        if q == 0:
            out.append(0.0)
        elif sigma == 0:
            out.append(math.inf)
        elif q == 1:
            out.append(alpha / (2 * sigma**2))
        elif float(alpha).is_integer():
            out.append(_log_a_int(q, sigma, int(alpha)) / (alpha - 1))
        else:
            out.append(_log_a_frac(q, sigma, float(alpha)) / (alpha - 1))
    return np.array(out, dtype=np.float64)


def epsilon_from_rdp(orders: Sequence[float], rdp: np.ndarray, delta: float) -> tuple[float, float]:
    """The smallest ``ε`` over ``orders`` for a total RDP curve, and the order achieving it."""
    alphas = np.asarray(orders, dtype=np.float64)
    rdp = np.asarray(rdp, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        eps = rdp + np.log((alphas - 1) / alphas) - (math.log(delta) + np.log(alphas)) / (alphas - 1)
    eps = np.where(np.isnan(eps), np.inf, eps)
    best = int(np.argmin(eps))
    return max(0.0, float(eps[best])), float(alphas[best])


class RDPAccountant:
    """Privacy spent by ``steps`` releases of one Gaussian mechanism.

    Args:
        noise_multiplier: noise std divided by the L2 sensitivity (clipping norm).
        sample_rate: probability that a release includes this participant (1: always).
        orders: Rényi orders (> 1) to evaluate.
    """

    def __init__(
        self, noise_multiplier: float, sample_rate: float = 1.0, orders: Sequence[float] = DEFAULT_ORDERS
    ) -> None:
        if noise_multiplier < 0 or not 0 <= sample_rate <= 1:
            raise ValueError("noise_multiplier must be >= 0 and sample_rate in [0, 1]")
        if any(a <= 1 for a in orders):
            raise ValueError("Rényi orders must be > 1")
        self.noise_multiplier = float(noise_multiplier)
        self.sample_rate = float(sample_rate)
        self.orders = tuple(float(a) for a in orders)
        self._per_step = gaussian_rdp(self.noise_multiplier, self.orders, self.sample_rate)
        self.steps = 0

    def step(self, count: int = 1) -> None:
        """Record ``count`` more releases."""
        self.steps += count

    def epsilon(self, delta: float) -> float:
        """ε such that the releases so far are (ε, δ)-DP."""
        if self.steps == 0:
            return 0.0
        with np.errstate(invalid="ignore"):
            total = self._per_step * self.steps
        return epsilon_from_rdp(self.orders, total, delta)[0]
