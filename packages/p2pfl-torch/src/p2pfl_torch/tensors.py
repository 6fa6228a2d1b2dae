"""Exact conversion between a module's ``state_dict`` and p2pfl :data:`~p2pfl.parameters.Parameters`.

Every tensor keeps its dtype bit for bit. numpy has no bfloat16, so bfloat16 tensors are
reinterpreted through int16 (same width) and viewed as ``ml_dtypes.bfloat16``: no value
ever passes through float32.
"""

from __future__ import annotations

from collections.abc import Mapping

import ml_dtypes
import numpy as np
import torch

from p2pfl.parameters import ParameterMismatchError, Parameters, check_compatible

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)

#: torch dtypes that travel, with their numpy twin.
_TORCH_TO_NUMPY: dict[torch.dtype, np.dtype] = {
    torch.bool: np.dtype(np.bool_),
    torch.uint8: np.dtype(np.uint8),
    torch.int8: np.dtype(np.int8),
    torch.int16: np.dtype(np.int16),
    torch.int32: np.dtype(np.int32),
    torch.int64: np.dtype(np.int64),
    torch.float16: np.dtype(np.float16),
    torch.float32: np.dtype(np.float32),
    torch.float64: np.dtype(np.float64),
    torch.complex64: np.dtype(np.complex64),
    torch.complex128: np.dtype(np.complex128),
    torch.bfloat16: BFLOAT16,
}


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A numpy copy of ``tensor`` with the same dtype (bfloat16 via ``ml_dtypes``)."""
    t = tensor.detach()
    if t.dtype not in _TORCH_TO_NUMPY:
        supported = ", ".join(str(d).removeprefix("torch.") for d in _TORCH_TO_NUMPY)
        raise TypeError(f"tensor dtype {t.dtype} cannot be exchanged; supported: {supported}")
    t = t.cpu().resolve_conj().resolve_neg()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(BFLOAT16).copy()
    # .numpy() shares memory with the tensor: copy so later training cannot change what was handed out.
    return t.numpy().copy()


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """A CPU tensor with ``array``'s dtype and values (bfloat16 reinterpreted bit for bit)."""
    a = np.asarray(array)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("="))
    if a.dtype == BFLOAT16:
        return torch.from_numpy(_owned(a.view(np.int16))).view(torch.bfloat16)
    if a.dtype not in _TORCH_TO_NUMPY.values():
        raise TypeError(f"array dtype {a.dtype} has no torch equivalent")
    return torch.from_numpy(_owned(a))


def _owned(a: np.ndarray) -> np.ndarray:
    # torch.from_numpy warns on read-only arrays (p2pfl freezes what it sends): copy those.
    # (not np.ascontiguousarray: it turns 0-d arrays into 1-d ones)
    return a if a.flags.c_contiguous and a.flags.writeable else a.copy(order="C")


def state_to_parameters(module: torch.nn.Module) -> Parameters:
    """Every tensor of ``module.state_dict()`` (buffers included), in its order, as numpy copies."""
    return {name: to_numpy(value) for name, value in module.state_dict().items()}


def load_parameters(module: torch.nn.Module, parameters: Mapping[str, np.ndarray]) -> None:
    """Copy ``parameters`` into ``module`` in place.

    Names and shapes must match the module's ``state_dict`` exactly
    (:class:`~p2pfl.parameters.ParameterMismatchError` lists every difference). A value whose
    dtype differs from the tensor's is cast to the tensor's dtype. Everything is converted
    before anything is written, so a failure leaves the module unchanged.
    """
    state = module.state_dict()
    check_compatible(state, parameters)
    converted = {}
    for name, target in state.items():
        value = np.asarray(parameters[name])
        if target.is_floating_point() or target.is_complex():
            converted[name] = to_tensor(value)
        elif value.dtype.kind in "fc" or value.dtype == BFLOAT16:
            # An integer buffer (e.g. num_batches_tracked) silently truncating a float is a bug upstream.
            raise ParameterMismatchError(f"{name}: expected an integer/bool tensor ({target.dtype}), got {value.dtype}")
        else:
            converted[name] = to_tensor(value)
    with torch.no_grad():
        for name, target in state.items():
            target.copy_(converted[name])
