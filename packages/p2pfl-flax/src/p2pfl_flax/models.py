"""Small Flax NNX models for MNIST-shaped inputs ``(batch, 28, 28)``; logits out."""

from __future__ import annotations

from p2pfl_flax import _jaxenv  # noqa: F401  (sets JAX_PLATFORMS before JAX loads)

# isort: split
import jax
import jax.numpy as jnp
from flax import nnx

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def _dtype(name: str) -> jnp.dtype:
    if name not in _DTYPES:
        raise ValueError(f"dtype {name!r} is not supported; accepted: {', '.join(_DTYPES)}")
    return _DTYPES[name]


class MLP(nnx.Module):
    """Flatten, one hidden ReLU layer, 10 logits."""

    def __init__(self, hidden: int, num_classes: int, *, dtype: jnp.dtype, rngs: nnx.Rngs) -> None:
        self.hidden = nnx.Linear(28 * 28, hidden, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.out = nnx.Linear(hidden, num_classes, dtype=dtype, param_dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape((x.shape[0], -1)).astype(self.hidden.kernel.dtype)
        return self.out(nnx.relu(self.hidden(x)))


class CNN(nnx.Module):
    """Two 3x3 convolutions with average pooling, batch norm, then a linear layer."""

    def __init__(self, num_classes: int, *, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(1, 16, kernel_size=(3, 3), rngs=rngs)
        self.norm1 = nnx.BatchNorm(16, rngs=rngs)
        self.conv2 = nnx.Conv(16, 32, kernel_size=(3, 3), rngs=rngs)
        self.out = nnx.Linear(7 * 7 * 32, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape((x.shape[0], 28, 28, 1))  # channels last
        x = nnx.avg_pool(nnx.relu(self.norm1(self.conv1(x))), window_shape=(2, 2), strides=(2, 2))
        x = nnx.avg_pool(nnx.relu(self.conv2(x)), window_shape=(2, 2), strides=(2, 2))
        return self.out(x.reshape((x.shape[0], -1)))


def mnist_mlp(hidden: int = 128, seed: int = 0, dtype: str = "float32") -> MLP:
    """An MLP for MNIST: ``(batch, 28, 28)`` → 10 logits; ``dtype`` of weights and compute."""
    return MLP(hidden, 10, dtype=_dtype(dtype), rngs=nnx.Rngs(seed))


def mnist_cnn(seed: int = 0) -> CNN:
    """A small CNN for MNIST (with batch statistics): ``(batch, 28, 28)`` → 10 logits."""
    return CNN(10, rngs=nnx.Rngs(seed))
