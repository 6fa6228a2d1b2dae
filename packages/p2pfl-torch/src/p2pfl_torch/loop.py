"""The training and evaluation loops that drive a LightningModule through Lightning Fabric.

Why not a ``lightning.Trainer``: building one and calling ``Trainer.fit`` costs several
times the training itself on a node's small partition (connectors, callbacks, loop state),
and a Trainer's progress bars and loggers are not safe across concurrent trainers. Fabric is
Lightning's own lightweight runner and officially supports LightningModules: ``self.log``
goes to Fabric's loggers (here, a per-learner :class:`MetricCollector`), ``self.optimizers()``
and ``self.manual_backward`` work, and precision plugins apply. One Fabric is built per
learner and reused for every round; no progress bar, logger, checkpoint or model summary
exists at all.

LightningModule hooks called, in Lightning's order: ``on_fit_start``, ``on_train_start``,
``on_train_epoch_start``, ``on_train_batch_start`` (returning ``-1`` ends the epoch),
``training_step``, ``on_before_zero_grad``, ``on_before_backward``, ``on_after_backward``,
``on_before_optimizer_step``, ``on_train_batch_end``, ``on_train_epoch_end``,
``on_train_end``, ``on_fit_end``; for evaluation ``test_step`` (or ``validation_step``) with
the matching ``on_*_epoch_start/end``. ``configure_optimizers`` is called at every fit (a
fresh optimizer and scheduler per round, as ``Trainer.fit`` does).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from lightning.fabric import Fabric
from lightning.fabric.loggers import Logger

from p2pfl_torch.correction import StepCounter
from p2pfl_torch.data import batch_size_of

Hook = Callable[[torch.optim.Optimizer, Any, Any], None]


class MetricCollector(Logger):
    """A Fabric logger that averages what a module logs, weighted by batch size (like ``on_epoch=True``)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = 1
        self._sums: dict[str, float] = {}
        self._weights: dict[str, float] = {}

    @property
    def name(self) -> str:
        return "p2pfl"

    @property
    def version(self) -> int:
        return 0

    def reset(self) -> None:
        self._sums.clear()
        self._weights.clear()

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for key, value in metrics.items():
            self._sums[key] = self._sums.get(key, 0.0) + float(value) * self.weight
            self._weights[key] = self._weights.get(key, 0.0) + self.weight

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def means(self) -> dict[str, float]:
        return {key: self._sums[key] / self._weights[key] for key in self._sums}


@dataclass
class Scheduler:
    """One LR scheduler and when to step it (Lightning's ``lr_scheduler`` config keys)."""

    scheduler: Any
    interval: str = "epoch"
    frequency: int = 1
    monitor: str | None = None
    #: calls seen at this interval, for ``frequency``
    calls: int = 0


@dataclass
class Optimization:
    optimizers: list[torch.optim.Optimizer]
    schedulers: list[Scheduler] = field(default_factory=list)


def parse_optimizers(config: Any) -> Optimization:
    """Read what ``configure_optimizers`` returned, in each form Lightning documents."""
    if config is None:
        return Optimization([])
    if isinstance(config, torch.optim.Optimizer):
        return Optimization([config])
    if isinstance(config, Mapping):
        return _from_dicts([config])
    if isinstance(config, Sequence):
        items = list(config)
        if len(items) == 2 and all(isinstance(i, Sequence) for i in items):  # ([optimizers], [schedulers])
            return Optimization(list(items[0]), [_scheduler(s) for s in items[1]])
        if items and all(isinstance(i, Mapping) for i in items):
            return _from_dicts(items)
        if all(isinstance(i, torch.optim.Optimizer) for i in items):
            return Optimization(items)
    raise TypeError(f"configure_optimizers returned an unsupported value: {type(config).__name__}")


def _from_dicts(configs: Iterable[Mapping[str, Any]]) -> Optimization:
    result = Optimization([])
    for conf in configs:
        if "optimizer" not in conf:
            raise TypeError("a configure_optimizers dict needs an 'optimizer' key")
        result.optimizers.append(conf["optimizer"])
        if conf.get("lr_scheduler") is not None:
            result.schedulers.append(_scheduler(conf["lr_scheduler"], conf.get("monitor")))
    return result


def _scheduler(spec: Any, monitor: str | None = None) -> Scheduler:
    if isinstance(spec, Mapping):
        interval = spec.get("interval", "epoch")
        if interval not in ("epoch", "step"):
            raise ValueError(f"lr_scheduler interval must be 'epoch' or 'step', got {interval!r}")
        return Scheduler(spec["scheduler"], interval, int(spec.get("frequency", 1)), spec.get("monitor", monitor))
    return Scheduler(spec, monitor=monitor)


@dataclass
class TrainOutcome:
    steps: int
    learning_rate: float | None
    metrics: dict[str, float]
    interrupted: bool


class FabricLoop:
    """Runs fits and evaluations of one LightningModule (one per learner, one call at a time).

    Args:
        module: the LightningModule (moved to the Fabric device once).
        accelerator, precision: handed to :class:`lightning.fabric.Fabric`.
    """

    def __init__(self, module: L.LightningModule, accelerator: str = "cpu", precision: Any = "32-true") -> None:
        self.module = module
        self.collector = MetricCollector()
        self.fabric = Fabric(accelerator=accelerator, devices=1, precision=precision, loggers=[self.collector])
        self._on_cpu = self.fabric.device.type == "cpu"
        # Once per learner: moves the module to the device, applies the precision plugin's
        # conversion, and attaches the Fabric (self.log, self.optimizers() go through it).
        self.fabric.setup_module(module)
        self._precision = self.fabric.strategy.precision

    # ------------------------------------------------------------------ training

    def fit(
        self, loader: Iterable[Any], epochs: int, stop: threading.Event, hooks: Sequence[Hook] = ()
    ) -> TrainOutcome:
        """Train ``epochs`` epochs; ``hooks`` become step pre-hooks of every optimizer for this fit."""
        module = self.module
        optimization = parse_optimizers(module.configure_optimizers())
        automatic = module.automatic_optimization
        if automatic and len(optimization.optimizers) != 1:
            raise TypeError(
                f"automatic optimization needs exactly one optimizer, configure_optimizers gave "
                f"{len(optimization.optimizers)} (set self.automatic_optimization = False for several)"
            )
        counter = StepCounter()
        handles = []
        if optimization.optimizers:
            counter.watch(optimization.optimizers[0])
            handles.append(optimization.optimizers[0].register_step_pre_hook(counter))
        for optimizer in optimization.optimizers:
            handles.extend(optimizer.register_step_pre_hook(hook) for hook in hooks)
        try:
            interrupted, metrics = self._train(loader, optimization, epochs, stop, automatic)
        finally:
            for handle in handles:
                handle.remove()
        return TrainOutcome(counter.steps, counter.learning_rate, metrics, interrupted)

    def _train(
        self, loader: Iterable[Any], optimization: Optimization, epochs: int, stop: threading.Event, automatic: bool
    ) -> tuple[bool, dict[str, float]]:
        module = self.module
        optimizers = self._setup_optimizers(optimization.optimizers)
        module.train()
        module.on_fit_start()
        module.on_train_start()
        metrics: dict[str, float] = {}
        interrupted = False
        for _ in range(epochs):
            self.collector.reset()
            module.on_train_epoch_start()
            interrupted = self._epoch(loader, optimizers, optimization.schedulers, stop, automatic)
            if interrupted:
                break
            module.on_train_epoch_end()
            metrics = self.collector.means()
            if automatic:
                self._step_schedulers(optimization.schedulers, "epoch", metrics)
        if not interrupted:
            module.on_train_end()
            module.on_fit_end()
        return interrupted, metrics

    def _setup_optimizers(self, optimizers: list[torch.optim.Optimizer]) -> list[Any]:
        """Fabric-wrapped optimizers, also reachable through the module's ``self.optimizers()``.

        The module itself was set up once in ``__init__``: ``Fabric.setup(module, *optimizers)``
        at every fit would redo the module's device move and wrapping each round.
        """
        if not optimizers:
            return []
        wrapped = self.fabric.setup_optimizers(*optimizers)
        wrapped_list = list(wrapped) if isinstance(wrapped, tuple) else [wrapped]
        # What Fabric.setup records for a LightningModule, so that self.optimizers() works
        # in manual optimization.
        self.module._fabric_optimizers = wrapped_list
        return wrapped_list

    def _epoch(
        self,
        loader: Iterable[Any],
        optimizers: list[Any],
        schedulers: list[Scheduler],
        stop: threading.Event,
        automatic: bool,
    ) -> bool:
        """One pass over ``loader``; True if ``stop`` was set (checked before every batch)."""
        module = self.module
        for batch_idx, batch in enumerate(loader):
            if stop.is_set():
                return True
            batch = self._prepare(batch)
            if module.on_train_batch_start(batch, batch_idx) == -1:
                break
            if automatic:
                out, stepped = self._automatic_step(optimizers[0], batch, batch_idx)
                if stepped:
                    self._step_schedulers(schedulers, "step", {})
            else:
                with self.fabric.autocast():
                    out = module.training_step(batch, batch_idx)
            module.on_train_batch_end(out, batch, batch_idx)
        return False

    def _automatic_step(self, optimizer: Any, batch: Any, batch_idx: int) -> tuple[Any, bool]:
        """``training_step``, backward and the optimizer update; returns the step's output and whether it updated."""
        module = self.module
        with self.fabric.autocast():
            out = module.training_step(batch, batch_idx)
        loss = out.get("loss") if isinstance(out, Mapping) else out
        if loss is None:  # Lightning's way of skipping a batch
            return out, False
        module.on_before_zero_grad(optimizer)
        optimizer.zero_grad()
        module.on_before_backward(loss)
        self.fabric.backward(loss)
        module.on_after_backward()
        module.on_before_optimizer_step(optimizer)
        optimizer.step()
        return out, True

    def _prepare(self, batch: Any) -> Any:
        """Move a batch to the device and the precision's input dtype; record its size for metrics.

        What ``_FabricModule.forward`` would do; the step methods are called on the module
        directly (single device: nothing to redirect through ``forward``), which also puts
        them under the precision's autocast.
        """
        if not self._on_cpu:
            batch = self.fabric.to_device(batch)
        batch = self._precision.convert_input(batch)
        self.collector.weight = batch_size_of(batch)
        return batch

    def _step_schedulers(self, schedulers: list[Scheduler], interval: str, metrics: Mapping[str, float]) -> None:
        for sched in schedulers:
            if sched.interval != interval:
                continue
            sched.calls += 1
            if sched.calls % sched.frequency:
                continue
            if sched.monitor is not None:
                if sched.monitor not in metrics:
                    raise KeyError(f"lr scheduler monitors {sched.monitor!r}, not logged; logged: {sorted(metrics)}")
                sched.scheduler.step(metrics[sched.monitor])
            else:
                sched.scheduler.step()

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, loader: Iterable[Any]) -> dict[str, float]:
        """Run ``test_step`` (else ``validation_step``) over ``loader``; the logged metrics, batch-weighted."""
        module = self.module
        stage = _evaluation_stage(module)
        step = getattr(module, f"{stage}_step")
        was_training = module.training
        module.eval()
        self.collector.reset()
        try:
            with torch.no_grad():
                getattr(module, f"on_{stage}_epoch_start")()
                for batch_idx, batch in enumerate(loader):
                    with self.fabric.autocast():
                        step(self._prepare(batch), batch_idx)
                getattr(module, f"on_{stage}_epoch_end")()
        finally:
            module.train(was_training)
        return with_standard_names(self.collector.means())


def _evaluation_stage(module: L.LightningModule) -> str:
    for stage in ("test", "validation"):
        if getattr(type(module), f"{stage}_step") is not getattr(L.LightningModule, f"{stage}_step"):
            return stage
    raise TypeError(f"{type(module).__name__} defines neither test_step nor validation_step: nothing to evaluate with")


_PREFIXES = ("test_", "test/", "val_", "val/", "valid_", "validation_", "validation/", "eval_", "eval/")
_STANDARD = {"loss": "loss", "acc": "accuracy", "accuracy": "accuracy"}


def with_standard_names(metrics: Mapping[str, float]) -> dict[str, float]:
    """Add ``loss`` / ``accuracy`` aliases for keys like ``test_loss`` or ``val/acc`` (originals kept)."""
    out = dict(metrics)
    for key, value in metrics.items():
        bare = key
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                bare = key[len(prefix) :]
                break
        standard = _STANDARD.get(bare)
        if standard is not None and standard not in out and not math.isnan(value):
            out[standard] = value
    return out
