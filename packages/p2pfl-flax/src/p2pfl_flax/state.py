"""Flatten Flax NNX states into p2pfl parameters with stable ``'/'``-joined names, and back.

A model's state is split into three groups: ``params`` (:class:`flax.nnx.Param`, what the
optimizer updates), ``rngs`` (:class:`flax.nnx.RngState`: the node's own random streams,
e.g. for dropout, never exchanged: PRNG keys are not numbers and sharing them would give
every node the same masks) and ``rest`` (batch statistics and any other variable). The
parameters p2pfl exchanges are ``params`` + ``rest``, in the model's own path order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from p2pfl_flax import _jaxenv  # noqa: F401  (sets JAX_PLATFORMS before JAX loads)

# isort: split
import jax
from flax import nnx

# The key JAX uses for the array inside a Variable when flattening it (``Variable.value``).
_VARIABLE_VALUE_KEYS = ("value", "raw_value")


def key_name(key: Any) -> str:
    """One path element of a JAX key path as text."""
    for attr in ("key", "idx", "name"):  # DictKey / FlattenedIndexKey, SequenceKey, GetAttrKey
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def path_name(path: Sequence[Any]) -> str:
    """``'/'``-joined name of a key path, without the Variable's own ``value`` attribute."""
    parts = list(path)
    if parts and isinstance(parts[-1], jax.tree_util.GetAttrKey) and parts[-1].name in _VARIABLE_VALUE_KEYS:
        parts.pop()
    return "/".join(key_name(p) for p in parts)


def leaf_names(tree: Any) -> list[str]:
    """Names of the leaves of ``tree``, in ``jax.tree.leaves`` order."""
    names = [path_name(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"model state has ambiguous parameter names: {', '.join(duplicates)}")
    return names


@dataclass
class SplitModel:
    """A model taken apart for functional JAX code: graph definitions and three state groups."""

    graphdef_train: Any
    graphdef_eval: Any
    params: Any
    rngs: Any
    rest: Any


def split_model(model: nnx.Module) -> SplitModel:
    """Split ``model`` (left in eval mode) into train/eval graph definitions and state groups.

    ``train()``/``eval()`` toggle static attributes (``deterministic``,
    ``use_running_average``) that live in the graph definition, hence two of them.
    """
    model.train()
    graphdef_train = nnx.graphdef(model)
    model.eval()
    # (flax's overloads of split() do not type a 4-way unpacking)
    graphdef_eval, params, rngs, rest = nnx.split(model, nnx.Param, nnx.RngState, ...)  # type: ignore[misc]
    return SplitModel(graphdef_train, graphdef_eval, params, rngs, rest)


def exchanged_names(model: nnx.Module) -> list[str]:
    """Names of every exchanged variable (params and the rest), in the model's path order."""
    return leaf_names(nnx.state(model, nnx.Not(nnx.RngState)))
