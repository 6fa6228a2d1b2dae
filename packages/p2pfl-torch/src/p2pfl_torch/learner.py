"""The ``torch`` learner: a LightningModule, or a plain ``torch.nn.Module``, trained on one node's data.

See ``docs/torch.md`` for the options, the thread budget and what is reproducible.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
from torch import nn

from p2pfl.learning.learner import FitResult, GradientCorrection, Learner, NodeData
from p2pfl.parameters import Parameters
from p2pfl_torch.correction import CorrectionHook
from p2pfl_torch.data import NodeLoaders
from p2pfl_torch.loop import FabricLoop
from p2pfl_torch.process import configure_process
from p2pfl_torch.supervised import SupervisedModule
from p2pfl_torch.tensors import load_parameters, state_to_parameters

#: options that build the LightningModule around a plain nn.Module (see SupervisedModule)
MODULE_OPTIONS = ("loss", "optimizer", "lr", "momentum", "weight_decay", "optimizer_kwargs")


class TorchLearner(Learner):
    """Trains a torch model on a node's data, driving it with Lightning Fabric (no Trainer).

    Args:
        model: a ``lightning.LightningModule`` (used as is: its ``training_step``,
            ``configure_optimizers``, ``test_step``/``validation_step`` and ``self.log`` calls), or a
            plain ``torch.nn.Module`` taking a batch of inputs, wrapped into a
            :class:`~p2pfl_torch.supervised.SupervisedModule` built from the options below.
        data: the node's data; batches are ``(x, y)`` with ``x`` float32 ``(batch, *input_shape)``
            and ``y`` int64 ``(batch,)``.
        seed: the node's seed; the training order of each fit is drawn from it and the fit's index.
        batch_size: overrides ``data.batch_size``.
        num_workers: DataLoader worker processes (default 0: load in the training thread).
        accelerator: Fabric accelerator (``"cpu"`` by default; ``"auto"``/``"cuda"``/``"mps"``).
        precision: Fabric precision (``"32-true"`` by default: the model's own dtypes are kept;
            e.g. ``"bf16-mixed"`` for autocast).
        **options: for a plain ``nn.Module`` only: ``loss``, ``optimizer``, ``lr``,
            ``momentum``, ``weight_decay``, ``optimizer_kwargs`` (see ``SupervisedModule``).
    """

    name = "torch"

    def __init__(
        self,
        model: nn.Module,
        data: NodeData,
        *,
        seed: int = 0,
        batch_size: int | None = None,
        num_workers: int = 0,
        accelerator: str = "cpu",
        precision: Any = "32-true",
        **options: Any,
    ) -> None:
        configure_process()
        module, net = _as_lightning(model, options)
        super().__init__(
            model, data, seed=seed, batch_size=batch_size, num_workers=num_workers,
            accelerator=accelerator, precision=precision, **options,
        )  # fmt: skip
        #: the LightningModule that is trained (the model itself, or its wrapper)
        self.module: L.LightningModule = module
        #: the module whose state_dict is exchanged (the user's model, without wrapper prefix)
        self.net: nn.Module = net
        self.loaders = NodeLoaders(data, batch_size, num_workers)
        self.loop = FabricLoop(module, accelerator, precision)
        self._stop = threading.Event()
        self._fits = 0

    # ------------------------------------------------------------------ parameters

    def get_parameters(self) -> Parameters:
        return state_to_parameters(self.net)

    def set_parameters(self, parameters: Mapping[str, np.ndarray]) -> None:
        load_parameters(self.net, parameters)

    def trainable_names(self) -> list[str]:
        return [name for name, param in self.net.named_parameters() if param.requires_grad]

    # ------------------------------------------------------------------ training

    def interrupt(self) -> None:
        self._stop.set()

    def fit(self, epochs: int, correction: GradientCorrection | None = None) -> FitResult:
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        self._stop.clear()
        hooks = []
        if correction is not None and not correction.is_zero:
            trainable = {name: p for name, p in self.net.named_parameters() if p.requires_grad}
            hooks.append(CorrectionHook(correction, trainable, set(self.net.state_dict())))
        loader = self.loaders.train(self._fit_seed())
        outcome = self.loop.fit(loader, epochs, self._stop, hooks)
        return FitResult(
            num_samples=len(self.loaders.train_set),
            num_steps=outcome.steps,
            learning_rate=outcome.learning_rate,
            metrics=outcome.metrics,
            interrupted=outcome.interrupted,
        )

    def _fit_seed(self) -> int:
        """A seed per (node seed, fit index): each round reshuffles, and a run replays exactly."""
        entropy = [int(self.seed) % 2**64, self._fits]
        self._fits += 1
        low, high = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
        return (int(high) << 32 | int(low)) & (2**63 - 1)

    # ------------------------------------------------------------------ evaluation

    def evaluate(self) -> dict[str, float]:
        n = len(self.loaders.test_set)
        if n == 0:
            return {"loss": float("nan"), "accuracy": float("nan"), "num_samples": 0.0}
        metrics = self.loop.evaluate(self.loaders.test())
        metrics["num_samples"] = float(n)
        return metrics


def _as_lightning(model: Any, options: dict[str, Any]) -> tuple[L.LightningModule, nn.Module]:
    """``(module to train, module whose state is exchanged)`` for ``model`` and the learner options."""
    unknown = sorted(set(options) - set(MODULE_OPTIONS))
    if unknown:
        accepted = ["batch_size", "num_workers", "accelerator", "precision", *MODULE_OPTIONS]
        raise TypeError(f"unknown torch learner option(s) {unknown}; accepted: {', '.join(accepted)}")
    if isinstance(model, L.LightningModule):
        if options:
            raise TypeError(
                f"option(s) {sorted(options)} apply to a plain torch.nn.Module only; a LightningModule "
                "sets its own loss and optimizer in training_step / configure_optimizers"
            )
        model.configure_model()  # Lightning's hook for modules that build their layers lazily
        return model, model
    if isinstance(model, nn.Module):
        return SupervisedModule(model, **options), model
    raise TypeError(
        f"the torch learner trains a torch.nn.Module or lightning.LightningModule, got {type(model).__name__}"
    )
