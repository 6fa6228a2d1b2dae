"""The jit-compiled train and eval steps, shared by learners whose models and options agree.

A step is a pure function of arrays (params, RNG state, other variables, optimizer state,
a batch, and the gradient correction), closed over a model's graph definition and an optax
transformation only. Learners with equal graph definitions (same architecture) and equal
options therefore reuse one compiled step: eight simulated nodes compile once, not eight
times. Nothing mutable is shared: each learner passes its own arrays in and gets new ones
back; the memo below is guarded by a lock and only ever adds finished entries.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from p2pfl_flax import _jaxenv  # noqa: F401  (sets JAX_PLATFORMS before JAX loads)

# isort: split
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from p2pfl_flax.options import FlaxOptions, make_optimizer

#: How many (architecture, options) combinations keep their compiled steps.
MAX_CACHED = 32


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy, in float32 whatever the model's dtype."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


@dataclass
class CompiledSteps:
    """Compiled ``train(params, rngs, rest, opt_state, x, y, scale, offset)`` and
    ``evaluate(params, rngs, rest, x, y, mask)`` of one architecture and options."""

    tx: optax.GradientTransformation
    train: Callable[..., Any]
    evaluate: Callable[..., Any]
    #: how many times each step was traced (i.e. compiled), for tests and diagnostics.
    traces: dict[str, int] = field(default_factory=lambda: {"train": 0, "eval": 0})


def _build(graphdef_train: Any, graphdef_eval: Any, opts: FlaxOptions) -> CompiledSteps:
    tx = make_optimizer(opts)
    steps = CompiledSteps(tx, train=lambda *a: None, evaluate=lambda *a: None)
    traces = steps.traces

    def train_step(params, rngs, rest, opt_state, x, y, scale, offset):  # type: ignore[no-untyped-def]
        traces["train"] += 1  # runs only while tracing

        model = nnx.merge(graphdef_train, params, rngs, rest)

        def loss_fn(m):  # type: ignore[no-untyped-def]
            logits = m(x)
            return cross_entropy(logits, y).mean(), logits

        # nnx.value_and_grad differentiates the Param leaves and carries the layers' updates
        # of other variables (batch statistics, RNG counters) back into ``model``.
        (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        _, rngs, rest = nnx.state(model, nnx.Param, nnx.RngState, ...)
        # GradientCorrection: g += scale * w + offset, before the optimizer sees g.
        grads = jax.tree.map(lambda g, w, o: (g + scale * w + o).astype(g.dtype), grads, params, offset)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        correct = jnp.sum(jnp.argmax(logits, axis=-1) == y)
        return params, rngs, rest, opt_state, loss, correct

    def eval_step(params, rngs, rest, x, y, mask):  # type: ignore[no-untyped-def]
        traces["eval"] += 1
        logits = nnx.merge(graphdef_eval, params, rngs, rest)(x)
        hits = (jnp.argmax(logits, axis=-1) == y).astype(jnp.float32)
        return jnp.sum(cross_entropy(logits, y) * mask), jnp.sum(hits * mask)

    steps.train = jax.jit(train_step)
    steps.evaluate = jax.jit(eval_step)
    return steps


_lock = threading.Lock()
_cache: OrderedDict[Hashable, CompiledSteps] = OrderedDict()


def compiled_steps(graphdef_train: Any, graphdef_eval: Any, opts: FlaxOptions) -> CompiledSteps:
    """The (lazily compiled) steps for this architecture and these options, shared when equal."""
    key = (graphdef_train, graphdef_eval, opts)
    with _lock:
        steps = _cache.get(key)
        if steps is None:
            steps = _cache[key] = _build(graphdef_train, graphdef_eval, opts)
            while len(_cache) > MAX_CACHED:
                _cache.popitem(last=False)
        else:
            _cache.move_to_end(key)
        return steps
