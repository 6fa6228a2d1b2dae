"""A plain ``torch.nn.Module`` turned into a LightningModule from config options.

:class:`SupervisedModule` owns the user's network as ``self.net`` and adds what Lightning
needs: a loss, an optimizer, and the metrics it logs once per epoch (``train_loss`` /
``train_accuracy`` while training, ``loss`` / ``accuracy`` when evaluating, both
sample-weighted means). The learner exchanges the *net's*
``state_dict``, so parameter names are the user's, with no wrapper prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from p2pfl.plugins.registry import resolve_target

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: name -> (loss function, task). The task says how targets are shaped and how accuracy is measured.
LOSSES: dict[str, tuple[LossFn, str]] = {
    "cross_entropy": (F.cross_entropy, "multiclass"),
    "nll": (F.nll_loss, "multiclass"),
    "bce_with_logits": (F.binary_cross_entropy_with_logits, "binary"),
    "mse": (F.mse_loss, "regression"),
    "l1": (F.l1_loss, "regression"),
    "smooth_l1": (F.smooth_l1_loss, "regression"),
}

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}

#: optimizers that take a ``momentum`` argument.
_WITH_MOMENTUM = {torch.optim.SGD, torch.optim.RMSprop}


def resolve_loss(loss: str | LossFn) -> tuple[LossFn, str]:
    """A loss by name (see :data:`LOSSES`), ``"module:attr"``, or a callable ``(output, target) -> loss``.

    Custom losses are treated as multi-class classification (integer targets, arg-max accuracy).
    """
    if callable(loss):
        return loss, "multiclass"
    if loss in LOSSES:
        return LOSSES[loss]
    if ":" in loss:
        return resolve_target(loss, what="loss"), "multiclass"
    raise ValueError(f"unknown loss {loss!r}; available: {', '.join(LOSSES)} (or 'module:attr')")


def resolve_optimizer(optimizer: str | Callable[..., torch.optim.Optimizer]) -> Callable[..., torch.optim.Optimizer]:
    """An optimizer class by name (see :data:`OPTIMIZERS`), ``"module:attr"``, or a callable."""
    if callable(optimizer):
        return optimizer
    if optimizer.lower() in OPTIMIZERS:
        return OPTIMIZERS[optimizer.lower()]
    if ":" in optimizer:
        return resolve_target(optimizer, what="optimizer")  # type: ignore[no-any-return]
    raise ValueError(f"unknown optimizer {optimizer!r}; available: {', '.join(OPTIMIZERS)} (or 'module:attr')")


class SupervisedModule(L.LightningModule):
    """Supervised training of ``net`` on ``(x, y)`` batches.

    Args:
        net: the network; called as ``net(x)`` with ``x`` of shape ``(batch, *input_shape)``,
            cast to the dtype of its first floating parameter (so bfloat16/float16 nets work).
        loss: see :func:`resolve_loss`. ``multiclass`` losses take integer labels and logits of
            shape ``(batch, classes)``; ``bce_with_logits`` takes one logit per example;
            regression losses compare the output with the label cast to float.
        optimizer: see :func:`resolve_optimizer`; built as ``optimizer(params, lr=..., ...)``.
        lr: learning rate.
        momentum: momentum (SGD and RMSprop only).
        weight_decay: L2 weight decay handed to the optimizer.
        optimizer_kwargs: any other optimizer arguments (e.g. ``{nesterov: true}``).
    """

    def __init__(
        self,
        net: nn.Module,
        loss: str | LossFn = "cross_entropy",
        optimizer: str | Callable[..., torch.optim.Optimizer] = "sgd",
        lr: float = 0.01,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        optimizer_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not float(lr) > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.net = net
        self.loss_fn, self.task = resolve_loss(loss)
        self.optimizer_factory = resolve_optimizer(optimizer)
        self.optimizer_kwargs: dict[str, Any] = {"lr": float(lr), **dict(optimizer_kwargs or {})}
        if weight_decay:
            self.optimizer_kwargs["weight_decay"] = float(weight_decay)
        if momentum:
            if self.optimizer_factory in OPTIMIZERS.values() and self.optimizer_factory not in _WITH_MOMENTUM:
                raise ValueError(f"momentum applies to sgd and rmsprop, not {optimizer!r}")
            self.optimizer_kwargs["momentum"] = float(momentum)
        self._totals = _Totals()
        self._input_dtype: torch.dtype | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self._input_dtype if self._input_dtype is not None else self._find_input_dtype()
        if dtype is not None and x.is_floating_point() and x.dtype != dtype:
            x = x.to(dtype)
        return self.net(x)  # type: ignore[no-any-return]

    def _find_input_dtype(self) -> torch.dtype | None:
        return next((p.dtype for p in self.net.parameters() if p.is_floating_point()), None)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.net.parameters(), **self.optimizer_kwargs)

    # ------------------------------------------------------------------ steps
    #
    # Metrics are summed on the fly (sample-weighted) and logged once per epoch: one
    # ``self.log`` per step costs a host sync and Lightning's bookkeeping for every batch.

    def on_train_epoch_start(self) -> None:
        self._totals = _Totals()
        # Looked up once per epoch, not per batch (the net's dtype does not change mid-epoch).
        self._input_dtype = self._find_input_dtype()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, correct = self._loss_and_correct(batch)
        self._totals.add(loss, correct, len(batch[1]))
        return loss

    def on_train_epoch_end(self) -> None:
        self._log_totals("train_")
        self._input_dtype = None

    def on_test_epoch_start(self) -> None:
        self._totals = _Totals()
        self._input_dtype = self._find_input_dtype()

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, correct = self._loss_and_correct(batch)
        self._totals.add(loss, correct, len(batch[1]))

    def on_test_epoch_end(self) -> None:
        self._log_totals("")
        self._input_dtype = None

    on_validation_epoch_start = on_test_epoch_start
    validation_step = test_step
    on_validation_epoch_end = on_test_epoch_end

    def _log_totals(self, prefix: str) -> None:
        totals = self._totals
        if not totals.seen:
            return
        self.log(prefix + "loss", totals.mean_loss())
        accuracy = totals.accuracy()
        if accuracy is not None:
            self.log(prefix + "accuracy", accuracy)

    def _loss_and_correct(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The batch's mean loss and, for classification, its number of correct predictions."""
        x, y = batch
        out = self(x)
        if self.task == "multiclass":
            return self.loss_fn(out, y), (out.detach().argmax(dim=-1) == y).sum()
        target = _target_like(out, y)
        loss = self.loss_fn(out, target)
        if self.task == "binary":
            return loss, ((out.detach() > 0) == (target > 0.5)).sum()
        return loss, None


class _Totals:
    """One epoch's per-batch losses and correct counts, reduced once at the end (no work per step)."""

    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.corrects: list[torch.Tensor] = []
        self.counts: list[int] = []

    def add(self, loss: torch.Tensor, correct: torch.Tensor | None, count: int) -> None:
        self.losses.append(loss.detach())
        if correct is not None:
            self.corrects.append(correct)
        self.counts.append(count)

    @property
    def seen(self) -> int:
        return sum(self.counts)

    def mean_loss(self) -> float:
        """Sample-weighted mean of the batch losses."""
        weights = torch.tensor(self.counts, dtype=torch.float64)
        losses = torch.stack(self.losses).to(device="cpu", dtype=torch.float64)
        return float(losses @ weights) / self.seen

    def accuracy(self) -> float | None:
        if not self.corrects:
            return None
        return float(torch.stack(self.corrects).sum()) / self.seen


def _target_like(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if out.numel() != y.numel():
        raise ValueError(f"model output {tuple(out.shape)} does not match labels {tuple(y.shape)} for this loss")
    return y.to(out.dtype).reshape(out.shape)
