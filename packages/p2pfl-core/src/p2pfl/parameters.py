"""Model parameters and updates: the data that travels between nodes.

``Parameters`` is an ordered ``dict`` of name → numpy array. Order, dtype and shape are part
of a model's identity: learners return every tensor (buffers too) with stable names, and
everything in p2pfl keeps dtypes exactly (bfloat16 via ``ml_dtypes``, integer counters,
0-d scalars, empty arrays).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ml_dtypes
import numpy as np

#: name → array, in the model's own order.
Parameters = dict[str, np.ndarray]

#: dtypes allowed on the wire (never ``object``): name → numpy dtype.
WIRE_DTYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(name)
    for name in (
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    )
}
WIRE_DTYPES["bfloat16"] = np.dtype(ml_dtypes.bfloat16)


class ParameterMismatchError(ValueError):
    """Two sets of parameters do not have the same names, shapes or dtypes."""


def dtype_name(dtype: np.dtype[Any]) -> str:
    """The wire name of ``dtype``; raises ``TypeError`` for dtypes that cannot travel."""
    name = np.dtype(dtype).name
    if name not in WIRE_DTYPES:
        raise TypeError(f"dtype {name!r} cannot be sent; supported: {', '.join(sorted(WIRE_DTYPES))}")
    return name


def is_float(array: np.ndarray) -> bool:
    """True for floating dtypes, bfloat16 included (numpy does not know it is a float)."""
    return array.dtype.kind == "f" or array.dtype == WIRE_DTYPES["bfloat16"]


def mismatches(expected: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray]) -> list[str]:
    """Human-readable differences in names and shapes between two parameter sets."""
    problems = []
    missing = [n for n in expected if n not in got]
    extra = [n for n in got if n not in expected]
    if missing:
        problems.append(f"missing: {', '.join(missing)}")
    if extra:
        problems.append(f"unexpected: {', '.join(extra)}")
    for name, value in expected.items():
        if name in got and tuple(np.shape(got[name])) != tuple(np.shape(value)):
            problems.append(f"{name}: shape {tuple(np.shape(got[name]))} != expected {tuple(np.shape(value))}")
    return problems


def check_compatible(expected: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray]) -> None:
    """Raise :class:`ParameterMismatchError` naming every name or shape that differs."""
    problems = mismatches(expected, got)
    if problems:
        raise ParameterMismatchError("parameters do not match the model: " + "; ".join(problems))


def freeze(params: Mapping[str, np.ndarray]) -> Parameters:
    """Read-only views of ``params`` (what is sent must not change after sending)."""
    frozen = {}
    for name, value in params.items():
        view = np.asarray(value).view()
        view.flags.writeable = False
        frozen[name] = view
    return frozen


def copy_parameters(params: Mapping[str, np.ndarray]) -> Parameters:
    """Deep copy, keeping dtypes."""
    return {name: np.array(value, copy=True) for name, value in params.items()}


def parameters_equal(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    """Bitwise equality of names, order, dtypes, shapes and bytes."""
    if list(a) != list(b):
        return False
    return all(a[n].dtype == b[n].dtype and a[n].shape == b[n].shape and a[n].tobytes() == b[n].tobytes() for n in a)


def parameters_digest(params: Mapping[str, np.ndarray]) -> str:
    """A short stable hash of names, dtypes, shapes and bytes (to compare models across nodes)."""
    import hashlib

    h = hashlib.sha256()
    for name, value in params.items():
        arr = np.asarray(value, order="C")
        h.update(f"{name}|{arr.dtype.name}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Update:
    """What one node (or a group, after aggregation) contributes to a round.

    Attributes:
        parameters: the model (or aggregate) parameters.
        num_samples: training samples behind it (FedAvg's weight).
        contributors: ids of the nodes whose training it contains.
        round: the learning round it belongs to.
        extras: named extra tensors, e.g. SCAFFOLD's control-variate deltas
            (``{"scaffold.delta_c": {...}}``), or aggregator state.
    """

    parameters: Parameters
    num_samples: int
    contributors: frozenset[str]
    round: int
    extras: dict[str, Parameters] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {self.num_samples}")
        object.__setattr__(self, "contributors", frozenset(self.contributors))
