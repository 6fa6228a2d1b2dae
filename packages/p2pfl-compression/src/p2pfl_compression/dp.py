"""``dp``: Gaussian mechanism on the whole update (clip the global L2 norm, add noise).

Each encode treats every float tensor it receives as one vector ``u``: it scales ``u`` by
``min(1, C / ‖u‖₂)`` so that its norm becomes exactly ``min(‖u‖₂, C)``, then adds independent
``N(0, (z·C)²)`` noise to every entry, drawn from this node's seeded generator. One encode is
one release of the Gaussian mechanism with noise multiplier ``z``; an RDP accountant composes
the releases and :meth:`GaussianDP.metrics` reports the ``(ε, δ)`` spent so far. The encode
happens on the sender, so what travels (and everything computed from it) is private; the
decode is the identity.

The accounting counts *encodes*: if the runtime encodes several different updates per round
(e.g. partial aggregates), each counts as a release.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from p2pfl.compression import Codec, CodecError
from p2pfl_compression._common import Arrays, check_version, codes, float_param
from p2pfl_compression.accountant import DEFAULT_ORDERS, RDPAccountant


class GaussianDP(Codec):
    """Clip the update to L2 norm ``clip`` and add Gaussian noise of std ``noise_multiplier * clip``.

    Args:
        clip: the clipping norm ``C`` (> 0). Default 1.0.
        noise_multiplier: ``z``, noise std over ``C`` (>= 0; 0 disables noise and gives ε = inf). Default 1.0.
        delta: the ``δ`` at which ``ε`` is reported, in (0, 1). Default 1e-5.
        sample_rate: probability that a node's update is part of a round's release (privacy
            amplification by Poisson sampling); 1.0 (default) claims no amplification.
        seed: seed of this node's noise (``None``: fresh entropy). Give each node its own.
        orders: Rényi orders for the accountant (default: Opacus's).
    """

    name = "dp"
    delta = True

    def __init__(
        self,
        clip: float = 1.0,
        noise_multiplier: float = 1.0,
        delta: float = 1e-5,
        sample_rate: float = 1.0,
        seed: int | None = None,
        orders: Sequence[float] | None = None,
    ) -> None:
        self.clip = float_param(clip, "clip", 0.0, float("inf"), lo_open=True)
        self.noise_multiplier = float_param(noise_multiplier, "noise_multiplier", 0.0, float("inf"))
        # ``delta`` (the class attribute) already means "works on updates"; δ is stored apart
        self.target_delta = float_param(delta, "delta", 0.0, 1.0, lo_open=True)
        if self.target_delta >= 1:
            raise ValueError(f"delta must be < 1, got {delta!r}")
        sample_rate = float_param(sample_rate, "sample_rate", 0.0, 1.0, lo_open=True)
        self.accountant = RDPAccountant(self.noise_multiplier, sample_rate, orders or DEFAULT_ORDERS)
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    def encode(self, arrays: Arrays) -> tuple[Arrays, dict[str, Any]]:
        complex_names = [n for n, a in arrays.items() if a.dtype.kind == "c"]
        if complex_names:  # they would travel without noise: refuse rather than leak
            raise CodecError(f"dp: complex tensors cannot be privatized: {', '.join(complex_names[:5])}")
        names = [n for n, a in arrays.items() if codes(a)]
        work = {n: np.asarray(arrays[n]).astype(np.float64) for n in names}
        norm = float(np.sqrt(sum(float(np.dot(w.ravel(), w.ravel())) for w in work.values())))
        if not np.isfinite(norm):
            raise CodecError("dp: the update holds NaN or infinite values; it cannot be clipped")
        factor = min(1.0, self.clip / norm) if norm > 0 else 1.0
        out = dict(arrays)
        with self._lock:  # one release at a time: the noise stream and the step count stay consistent
            std = self.noise_multiplier * self.clip
            for name in names:
                noisy = work[name] * factor
                if std > 0:
                    noisy += self._rng.normal(0.0, std, size=noisy.shape)
                out[name] = noisy.astype(arrays[name].dtype)
            if names:
                self.accountant.step()
        return out, {"v": 1, "clip": self.clip, "noise_multiplier": self.noise_multiplier}

    def decode(self, arrays: Arrays, meta: dict[str, Any]) -> Arrays:
        check_version(meta, "codec 'dp'")
        return dict(arrays)

    def epsilon(self) -> float:
        """ε spent so far at this codec's δ."""
        return self.accountant.epsilon(self.target_delta)

    def metrics(self) -> dict[str, float]:
        return {
            "epsilon": self.epsilon(),
            "delta": self.target_delta,
            "releases": float(self.accountant.steps),
        }
