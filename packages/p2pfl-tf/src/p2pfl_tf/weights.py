"""Keras 3 weights as p2pfl parameters: stable names, exact numpy dtypes, checked conversion.

Names
-----

Keras names a variable by its path (``v.path``, e.g. ``"sequential_3/dense_7/kernel"``),
and the scopes in it are made unique by counters global to a thread: the same code builds
``dense/kernel`` in a fresh process but ``dense_7/kernel`` after six other Dense layers. Two
nodes must agree on names to aggregate, so names are derived from the paths but made
independent of those counters:

* the model's own scope is dropped when every path starts with it;
* in each parent scope, scopes are renamed in order of first appearance: the counter suffix
  (``_7``) is removed and added back only to tell siblings apart (``dense``, ``dense_1``).

The result is what the same model would be called in a fresh process (``dense/kernel``,
``dense_1/kernel``, ``batch_normalization/moving_mean``), for every model built by the same
code, in any order and in any thread.

Dtypes
------

Parameters keep each variable's dtype exactly (bfloat16 through ``ml_dtypes``). Loading
converts within a kind only (float to float, integer to integer) and names what cannot be
loaded; names and shapes are checked with :func:`p2pfl.parameters.check_compatible`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from p2pfl.parameters import WIRE_DTYPES, ParameterMismatchError

_COUNTER_SUFFIX = re.compile(r"_\d+$")


def _unique(base: str, used: set[str]) -> str:
    candidate, k = base, 0
    while candidate in used:
        k += 1
        candidate = f"{base}_{k}"
    used.add(candidate)
    return candidate


def canonical_names(paths: Sequence[str], model_name: str | None = None) -> list[str]:
    """Counter-independent, unique names for variable ``paths`` (in the model's weight order)."""
    split = [path.split("/") for path in paths]
    if model_name and split and all(len(parts) > 1 and parts[0] == model_name for parts in split):
        split = [parts[1:] for parts in split]
    renamed: dict[tuple[str, ...], str] = {}  # raw scope path -> canonical scope name
    used_in: dict[tuple[str, ...], set[str]] = {}  # raw parent path -> names taken there
    names: list[str] = []
    taken: set[str] = set()
    for parts in split:
        canonical = []
        for depth in range(len(parts) - 1):
            key = tuple(parts[: depth + 1])
            if key not in renamed:
                base = _COUNTER_SUFFIX.sub("", parts[depth]) or parts[depth]
                renamed[key] = _unique(base, used_in.setdefault(key[:-1], set()))
            canonical.append(renamed[key])
        name = "/".join([*canonical, parts[-1]])
        # Two variables of one layer may share a name; keep names unique, in weight order.
        names.append(_unique(name, taken))
    return names


def weight_names(model: Any) -> list[str]:
    """Names of ``model.weights`` (trainable and not, no seeds or metric state), in that order."""
    paths = [getattr(w, "path", None) or w.name for w in model.weights]
    return canonical_names(paths, getattr(model, "name", None))


def numpy_dtype(variable: Any) -> np.dtype[Any]:
    """The numpy dtype of a Keras variable (Keras names dtypes by strings; bfloat16 via ml_dtypes)."""
    name = str(getattr(variable.dtype, "name", variable.dtype))
    return WIRE_DTYPES.get(name) or np.dtype(name)


def spec(variable: Any) -> np.ndarray:
    """A stand-in with the variable's shape and dtype (a broadcast view, no copy) for :func:`check_compatible`."""
    return np.broadcast_to(np.zeros((), dtype=numpy_dtype(variable)), tuple(variable.shape))


def _is_float_dtype(dtype: np.dtype[Any]) -> bool:
    return dtype.kind == "f" or dtype == WIRE_DTYPES["bfloat16"]


def converted(name: str, value: np.ndarray, variable: Any) -> np.ndarray:
    """``value`` in ``variable``'s dtype: floats convert between float dtypes, integers between integer ones."""
    array = np.asarray(value)
    target = numpy_dtype(variable)
    same_kind = (_is_float_dtype(array.dtype) and _is_float_dtype(target)) or (
        array.dtype.kind in "iu" and target.kind in "iu"
    )
    if array.dtype != target and not same_kind:
        raise ParameterMismatchError(f"{name}: dtype {array.dtype} cannot be loaded into a {target} variable")
    return np.array(array, dtype=target, copy=True)
