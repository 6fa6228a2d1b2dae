"""The ``tensorflow`` learner: compiled Keras 3 models on the TensorFlow backend.

Training and evaluation are Keras' own ``model.fit`` / ``model.evaluate`` on ``tf.data``
pipelines built from the node's partitions, so a model reports exactly the loss and
metrics it was compiled with. What p2pfl adds:

* parameters: every weight (trainable and not, e.g. BatchNorm moving statistics, but no
  RNG seeds or metric state) under names independent of Keras' global name counters
  (:mod:`p2pfl_tf.naming`), dtypes kept exactly;
* a seeded shuffle per node and per fit (:mod:`p2pfl_tf.data`);
* core's gradient correction (FedProx, SCAFFOLD) at every optimizer step
  (:mod:`p2pfl_tf.correction`);
* :meth:`KerasLearner.interrupt`, honoured at the end of the running batch.

Each learner must own its model (and the model its optimizer): several learners train
concurrently in threads of one process, and Keras keeps per-model state (compiled train
functions, optimizer slots, metrics) on the model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from p2pfl.learning.learner import FitResult, GradientCorrection, Learner, NodeData
from p2pfl.parameters import Parameters, check_compatible
from p2pfl_tf._tfenv import keras
from p2pfl_tf.correction import GradientCorrector
from p2pfl_tf.data import make_dataset, node_arrays, shuffle_seed
from p2pfl_tf.weights import converted, spec, weight_names

logger = logging.getLogger(__name__)

#: metric names Keras uses for accuracy metrics, reported to core as ``accuracy`` too.
ACCURACY_ALIASES = ("accuracy", "acc", "sparse_categorical_accuracy", "categorical_accuracy", "binary_accuracy")


def with_accuracy(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Metrics as floats, plus ``accuracy`` when exactly one compiled metric is an accuracy under another name."""
    out = {name: float(value) for name, value in metrics.items() if np.ndim(value) == 0}
    if "accuracy" not in out:
        found = [name for name in out if name in ACCURACY_ALIASES]
        if not found:
            found = [name for name in out if name.endswith("accuracy")]
        if len(found) == 1:
            out["accuracy"] = out[found[0]]
    return out


class _Interrupt(keras.callbacks.Callback):
    """Stops ``model.fit`` after the batch during which :meth:`KerasLearner.interrupt` was called."""

    def __init__(self, event: threading.Event) -> None:
        super().__init__()
        self.event = event
        self.triggered = False

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.event.is_set():
            self.triggered = True
            self.model.stop_training = True


class KerasLearner(Learner):
    """Trains a compiled Keras 3 model on one node's data with ``model.fit``.

    Args:
        model: a compiled ``keras.Model`` (optimizer, loss, and metrics; include an
            accuracy metric, which core reports). Built on first use if needed. It is
            trained in place and must not be shared with another learner.
        data: the node's data; ``data.features`` and ``data.label`` name the columns.
        seed: seeds the node's batch order (each fit draws a new order from it).
        lr: if given, replaces the learning rate of the compiled optimizer.
        batch_size: overrides ``data.batch_size``.
        shuffle_buffer: ``tf.data`` shuffle buffer (default: the whole train split).

    Unknown options raise ``TypeError`` (they are usually a misspelt key in the experiment
    config's ``model.options``).
    """

    name = "tensorflow"

    def __init__(
        self,
        model: Any,
        data: NodeData,
        *,
        seed: int = 0,
        lr: float | None = None,
        batch_size: int | None = None,
        shuffle_buffer: int | None = None,
    ) -> None:
        if not isinstance(model, keras.Model):
            kind = f"{type(model).__module__}.{type(model).__qualname__}"
            raise TypeError(f"the tensorflow learner trains a Keras 3 keras.Model, got {kind}")
        if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", True):
            raise ValueError(
                "the tensorflow learner needs a compiled model: call "
                "model.compile(optimizer=..., loss=..., metrics=['accuracy']) before creating the learner"
            )
        super().__init__(model, data, seed=seed, lr=lr, batch_size=batch_size, shuffle_buffer=shuffle_buffer)
        self.batch_size = int(batch_size or data.batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if shuffle_buffer is not None and int(shuffle_buffer) < 1:
            raise ValueError(f"shuffle_buffer must be >= 1, got {shuffle_buffer}")
        self.shuffle_buffer = None if shuffle_buffer is None else int(shuffle_buffer)
        if lr is not None:
            if not float(lr) > 0:
                raise ValueError(f"lr must be > 0, got {lr}")
            model.optimizer.learning_rate = float(lr)
        self._x_train, self._y_train = node_arrays(data, "train")
        self._x_test, self._y_test = node_arrays(data, "test")
        self._ensure_built()
        self._names = weight_names(model)
        self._weights = list(zip(self._names, model.weights))
        self._corrector = GradientCorrector(model, self._weights)
        self._stop = threading.Event()
        self._interrupt = _Interrupt(self._stop)
        self._fits = 0
        self._test_dataset: Any = None

    def _ensure_built(self) -> None:
        """Create the model's variables (an unbuilt Sequential or subclassed model has none yet)."""
        if self.model.built and self.model.weights:
            return
        sample = self._x_train[:1] if len(self._x_train) else self._x_test[:1]
        if not len(sample):
            raise ValueError("cannot build the model: the node has no training or test examples")
        self.model(sample, training=False)

    # ------------------------------------------------------------------ parameters

    def get_parameters(self) -> Parameters:
        return {name: np.array(variable.numpy(), copy=True) for name, variable in self._weights}

    def set_parameters(self, parameters: Mapping[str, np.ndarray]) -> None:
        current = {name: spec(variable) for name, variable in self._weights}
        check_compatible(current, parameters)
        # Convert every tensor before assigning any, so a bad one leaves the model intact.
        values = [(variable, converted(name, parameters[name], variable)) for name, variable in self._weights]
        for variable, value in values:
            variable.assign(value)

    def trainable_names(self) -> list[str]:
        trainable = {id(v) for v in self.model.trainable_weights}
        return [name for name, variable in self._weights if id(variable) in trainable]

    # ------------------------------------------------------------------ training

    def interrupt(self) -> None:
        self._stop.set()

    def fit(self, epochs: int, correction: GradientCorrection | None = None) -> FitResult:
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        self._stop.clear()
        if self._corrector.configure(correction):
            self.model.train_function = None  # the traced step embeds which terms exist: retrace
        num_samples = len(self._y_train)
        seed = shuffle_seed(self.seed, self._fits)
        self._fits += 1
        if epochs == 0 or num_samples == 0:
            return FitResult(num_samples=num_samples, num_steps=0, learning_rate=self._learning_rate())
        dataset = make_dataset(
            self._x_train, self._y_train, self.batch_size, seed=seed, buffer_size=self.shuffle_buffer
        )
        optimizer = self.model.optimizer
        steps_before = int(np.asarray(optimizer.iterations))
        self._interrupt.triggered = False
        history = self.model.fit(dataset, epochs=epochs, verbose=0, shuffle=False, callbacks=[self._interrupt])
        last = {name: values[-1] for name, values in history.history.items() if values}
        metrics = {f"train_{name}": value for name, value in with_accuracy(last).items()}
        return FitResult(
            num_samples=num_samples,
            num_steps=int(np.asarray(optimizer.iterations)) - steps_before,
            learning_rate=self._learning_rate(),
            metrics=metrics,
            interrupted=self._interrupt.triggered,
        )

    def _learning_rate(self) -> float | None:
        try:
            return float(np.asarray(self.model.optimizer.learning_rate))
        except (TypeError, ValueError):  # a schedule object that cannot be read as a number
            return None

    # ------------------------------------------------------------------ evaluation

    def evaluate(self) -> dict[str, float]:
        n = len(self._y_test)
        if n == 0:
            return {"loss": float("nan"), "accuracy": float("nan"), "num_samples": 0.0}
        if self._test_dataset is None:
            self._test_dataset = make_dataset(self._x_test, self._y_test, self.batch_size)
        results = self.model.evaluate(self._test_dataset, verbose=0, return_dict=True)
        metrics = with_accuracy(results)
        metrics["num_samples"] = float(n)
        return metrics

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The model's outputs for ``x`` in inference mode (e.g. logits), as numpy."""
        return np.asarray(self.model(np.asarray(x, dtype=np.float32), training=False))
