"""Core's :class:`~p2pfl.learning.GradientCorrection` for torch, and step accounting.

Both are *optimizer step pre-hooks* (``Optimizer.register_step_pre_hook``): they run inside
``optimizer.step()``, after the gradients are final (backward done, Lightning's
``on_before_optimizer_step`` called, mixed-precision gradients unscaled) and before the
update. That makes them work the same for automatic and manual optimization, for any
number of optimizers, and without knowing which LightningModule hooks the user overrides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from p2pfl.learning.learner import GradientCorrection
from p2pfl.parameters import ParameterMismatchError
from p2pfl_torch.tensors import to_tensor


class CorrectionHook:
    """Adds ``scale * w + offset[name]`` to the gradient of every trainable parameter an optimizer updates.

    A trainable parameter without a gradient (unused in this step) gets a zero gradient first,
    so the correction still applies, as it does on every other framework.

    Args:
        correction: the correction for this fit.
        named: the model's trainable parameters by name.
        all_names: every name of the model's state (offsets naming buffers are ignored:
            buffers are not trained; unknown names are an error).
    """

    def __init__(
        self, correction: GradientCorrection, named: Mapping[str, torch.nn.Parameter], all_names: set[str]
    ) -> None:
        self.scale = float(correction.scale)
        unknown = sorted(set(correction.offset) - all_names)
        if unknown:
            raise ParameterMismatchError(f"gradient correction names unknown parameters: {', '.join(unknown)}")
        # keyed by id(): tensors compare element-wise, so they make poor dict keys
        self.offsets: dict[int, torch.Tensor | None] = {}
        for name, param in named.items():
            value = correction.offset.get(name)
            self.offsets[id(param)] = None if value is None else self._offset(name, value, param)

    @staticmethod
    def _offset(name: str, value: np.ndarray, param: torch.nn.Parameter) -> torch.Tensor:
        array = np.asarray(value)
        if array.shape != tuple(param.shape):
            raise ParameterMismatchError(
                f"gradient correction {name}: shape {array.shape} != parameter shape {tuple(param.shape)}"
            )
        return to_tensor(array).to(device=param.device, dtype=param.dtype)

    def __call__(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        with torch.no_grad():
            for group in optimizer.param_groups:
                for param in group["params"]:
                    if id(param) not in self.offsets:
                        continue
                    if param.grad is None:
                        param.grad = torch.zeros_like(param)
                    if self.scale:
                        param.grad.add_(param, alpha=self.scale)
                    offset = self.offsets[id(param)]
                    if offset is not None:
                        param.grad.add_(offset)


class StepCounter:
    """Counts the updates of one optimizer and the learning rate each used (its first param group)."""

    def __init__(self) -> None:
        self.steps = 0
        self.initial_lr: float | None = None
        self._lrs: list[float] = []

    def watch(self, optimizer: torch.optim.Optimizer) -> None:
        self.initial_lr = _lr(optimizer)

    def __call__(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.steps += 1
        lr = _lr(optimizer)
        if lr is not None:
            self._lrs.append(lr)

    @property
    def learning_rate(self) -> float | None:
        """The mean learning rate over the steps taken (what SCAFFOLD's ``K * lr`` needs), else the initial one.

        A constant rate is returned exactly (no rounding from averaging).
        """
        if not self._lrs:
            return self.initial_lr
        if min(self._lrs) == max(self._lrs):
            return self._lrs[0]
        return math.fsum(self._lrs) / len(self._lrs)


def _lr(optimizer: torch.optim.Optimizer) -> float | None:
    lr = optimizer.param_groups[0].get("lr") if optimizer.param_groups else None
    return float(lr) if isinstance(lr, int | float | torch.Tensor) else None
