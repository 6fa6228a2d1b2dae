"""Hook implementations of p2pfl-flax (entry point ``p2pfl-flax`` in group ``p2pfl``).

Targets are lazy ``"module:attr"`` strings: listing plugins must not import JAX.
"""

from __future__ import annotations

from typing import Any

from p2pfl import hookimpl

#: How a Flax NNX module's base class appears in ``type(model).__mro__`` (module.qualname).
NNX_MODULE_TYPE = "flax.nnx.module.Module"


@hookimpl
def p2pfl_register_learners(register: Any) -> None:
    register(
        "flax",
        "p2pfl_flax.learner:FlaxLearner",
        model_types=[NNX_MODULE_TYPE],
        description="JAX / Flax NNX models trained with optax (jit-compiled step)",
    )


@hookimpl
def p2pfl_register_examples(register: Any) -> None:
    register(
        "mnist-flax",
        "p2pfl_flax.examples:mnist_flax",
        description="8 Flax MLP nodes on a ring learn MNIST (iid, in-memory, FedAvg)",
    )
