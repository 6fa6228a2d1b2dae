"""Learner options (``model.options`` of an experiment) and the optax optimizer they build."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from p2pfl_flax import _jaxenv  # noqa: F401  (sets JAX_PLATFORMS before JAX loads)

# isort: split
import optax

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad")
OPTIMIZER_STATE_POLICIES = ("reset", "keep")


@dataclass(frozen=True)
class FlaxOptions:
    """Options of :class:`p2pfl_flax.learner.FlaxLearner`.

    Attributes:
        optimizer: one of :data:`OPTIMIZERS`.
        lr: learning rate (constant).
        momentum: SGD momentum (``sgd`` and ``rmsprop``); 0 disables it.
        nesterov: Nesterov momentum for ``sgd``.
        weight_decay: decoupled for ``adamw``; added to the gradient (L2) for the others.
        optimizer_state: ``"reset"`` (default) starts every :meth:`fit` with a fresh optax
            state, because the weights it was built for were replaced by the aggregated
            model; ``"keep"`` carries it (e.g. Adam's moments) from one fit to the next.
    """

    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    optimizer_state: str = "reset"

    @classmethod
    def parse(cls, options: dict[str, Any]) -> FlaxOptions:
        """Validate ``options``; errors name the option and the accepted values."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(
                f"unknown flax learner option(s) {', '.join(unknown)}; accepted: {', '.join(sorted(known))}"
            )
        opts = cls(**options)
        if opts.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {opts.optimizer!r} is not supported; accepted: {', '.join(OPTIMIZERS)}")
        if opts.optimizer_state not in OPTIMIZER_STATE_POLICIES:
            raise ValueError(
                f"optimizer_state {opts.optimizer_state!r} is not supported; accepted: "
                + ", ".join(OPTIMIZER_STATE_POLICIES)
            )
        for name in ("lr", "momentum", "weight_decay"):
            value = getattr(opts, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        return opts


def make_optimizer(opts: FlaxOptions) -> optax.GradientTransformation:
    """The optax transformation for ``opts``."""
    lr, momentum = float(opts.lr), float(opts.momentum) or None
    if opts.optimizer == "adamw":
        return optax.adamw(lr, weight_decay=float(opts.weight_decay))
    if opts.optimizer == "sgd":
        tx = optax.sgd(lr, momentum=momentum, nesterov=opts.nesterov)
    elif opts.optimizer == "adam":
        tx = optax.adam(lr)
    elif opts.optimizer == "rmsprop":
        tx = optax.rmsprop(lr, momentum=momentum)
    else:
        tx = optax.adagrad(lr)
    if opts.weight_decay:
        tx = optax.chain(optax.add_decayed_weights(float(opts.weight_decay)), tx)
    return tx
