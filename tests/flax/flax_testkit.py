"""Small Flax models and data shared by the p2pfl-flax tests (imported by the test modules)."""

from __future__ import annotations

from collections.abc import Callable

import datasets
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from p2pfl.learning.learner import NodeData


class TinyMLP(nnx.Module):
    """Flat features -> hidden ReLU (with optional dropout) -> logits."""

    def __init__(
        self, features: int, classes: int, *, hidden: int = 16, dtype=jnp.float32, dropout: float = 0.0, seed: int = 0
    ) -> None:
        rngs = nnx.Rngs(seed)
        self.hidden = nnx.Linear(features, hidden, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs) if dropout else None
        self.out = nnx.Linear(hidden, classes, dtype=dtype, param_dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = nnx.relu(self.hidden(x.reshape((x.shape[0], -1)).astype(self.hidden.kernel.dtype)))
        if self.drop is not None:
            h = self.drop(h)
        return self.out(h)


class TinyBN(nnx.Module):
    """A model with batch statistics and an integer counter variable (non-Param state)."""

    def __init__(self, features: int, classes: int, *, seed: int = 0) -> None:
        rngs = nnx.Rngs(seed)
        self.hidden = nnx.Linear(features, 16, rngs=rngs)
        self.norm = nnx.BatchNorm(16, rngs=rngs)
        self.out = nnx.Linear(16, classes, rngs=rngs)
        self.calls = nnx.BatchStat(jnp.zeros((), jnp.int32))

    def __call__(self, x: jax.Array) -> jax.Array:
        if not self.norm.use_running_average:  # count training forward passes only
            self.calls[...] = self.calls[...] + 1
        return self.out(nnx.relu(self.norm(self.hidden(x.reshape((x.shape[0], -1))))))


class Probe(nnx.Module):
    """A linear model that calls ``on_step()`` (on the host) every time it runs."""

    def __init__(self, features: int, classes: int, on_step: Callable[[], None], *, seed: int = 0) -> None:
        self.lin = nnx.Linear(features, classes, rngs=nnx.Rngs(seed))
        self.on_step = on_step

    def __call__(self, x: jax.Array) -> jax.Array:
        jax.debug.callback(self.on_step)
        return self.lin(x.reshape((x.shape[0], -1)))


class Scalar(nnx.Module):
    """Logits ``[w * x + b, 0]`` for one input feature: gradients computable by hand."""

    def __init__(self) -> None:
        self.w = nnx.Param(jnp.zeros((), jnp.float32))
        self.b = nnx.Param(jnp.zeros((), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        z = x[:, 0] * self.w[...] + self.b[...]
        return jnp.stack([z, jnp.zeros_like(z)], axis=-1)


def node_data_from_arrays(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *, classes: int, batch_size: int
) -> NodeData:
    """NodeData with a flat float32 feature column ``x`` (input shape = one row's shape)."""

    def split(x: np.ndarray, y: np.ndarray) -> datasets.Dataset:
        return datasets.Dataset.from_dict({"x": x.reshape(len(x), -1).astype(np.float32), "label": y.astype(np.int64)})

    return NodeData(
        split(x_train, y_train),
        split(x_test, y_test),
        features="x",
        label="label",
        num_classes=classes,
        batch_size=batch_size,
        input_shape=tuple(x_train.shape[1:]),
    )
