"""The ``numpy`` reference learner: softmax regression or a small ReLU MLP, trained with SGD.

No ML framework is needed, so ``p2pfl-core`` alone is a complete system. It is also the
reference the conformance suite is checked against, and it is cheap enough to simulate
hundreds of nodes in one process: data is converted to flat float32 arrays once, every
step is a handful of vectorised numpy operations, and everything stays in float32.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from p2pfl.learning.learner import FitResult, GradientCorrection, Learner, NodeData
from p2pfl.parameters import ParameterMismatchError, Parameters, check_compatible, is_float

#: rows evaluated at once (bounds the memory of evaluating a large test split).
EVAL_CHUNK = 4096


class NumpyModel:
    """A dense network on flat inputs: softmax regression when ``hidden`` is empty, else a ReLU MLP.

    Parameters are float32 arrays named ``fc{i}.weight`` (shape ``(in, out)``) and
    ``fc{i}.bias`` (shape ``(out,)``), in layer order. Weights are drawn from ``seed``
    (He-uniform before a ReLU, Glorot-uniform for the output layer); biases start at zero.

    Args:
        input_dim: number of input features (inputs are flattened).
        num_classes: number of output classes.
        hidden: widths of the hidden layers.
        seed: seed of the initial weights.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden: Sequence[int] = (), seed: int = 0) -> None:
        widths = [int(input_dim), *(int(h) for h in hidden), int(num_classes)]
        if any(w < 1 for w in widths) or int(num_classes) < 2:
            raise ValueError(f"need input_dim >= 1, hidden widths >= 1 and num_classes >= 2, got {widths}")
        self.input_dim = widths[0]
        self.num_classes = widths[-1]
        self.hidden = tuple(widths[1:-1])
        rng = np.random.default_rng(seed)
        self.params: Parameters = {}
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
            last = i == len(widths) - 2
            bound = np.sqrt(6.0 / (fan_in + fan_out)) if last else np.sqrt(6.0 / fan_in)
            self.params[f"fc{i}.weight"] = rng.uniform(-bound, bound, size=(fan_in, fan_out)).astype(np.float32)
            self.params[f"fc{i}.bias"] = np.zeros(fan_out, dtype=np.float32)

    def __repr__(self) -> str:
        return f"NumpyModel(input_dim={self.input_dim}, num_classes={self.num_classes}, hidden={list(self.hidden)})"

    @property
    def num_layers(self) -> int:
        return len(self.hidden) + 1

    def _layers(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in range(self.num_layers):
            yield self.params[f"fc{i}.weight"], self.params[f"fc{i}.bias"]

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Logits of ``x`` (flat float32 rows) and the input of every layer (for backprop)."""
        inputs = []
        a = x
        for i, (w, b) in enumerate(self._layers()):
            inputs.append(a)
            a = a @ w + b
            if i < self.num_layers - 1:
                a = np.maximum(a, 0.0)
        return a, inputs

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int, Parameters]:
        """Mean cross-entropy of a batch, its number of correct predictions, and the gradients."""
        logits, inputs = self.forward(x)
        probs, loss = softmax_cross_entropy(logits, y)
        correct = int(np.count_nonzero(logits.argmax(axis=1) == y))
        # d(mean CE)/d(logits) = (softmax - onehot) / batch
        delta = probs
        delta[np.arange(len(y)), y] -= 1.0
        delta /= np.float32(len(y))
        grads: Parameters = {}
        for i in reversed(range(self.num_layers)):
            w = self.params[f"fc{i}.weight"]
            grads[f"fc{i}.weight"] = inputs[i].T @ delta
            grads[f"fc{i}.bias"] = delta.sum(axis=0)
            if i > 0:
                # inputs[i] is the ReLU output of the layer below: its gradient is zero where it is zero.
                delta = (delta @ w.T) * (inputs[i] > 0)
        return loss, correct, grads


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Softmax probabilities and mean cross-entropy of integer labels ``y``, computed stably."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sums = exp.sum(axis=1, keepdims=True)
    log_probs = shifted[np.arange(len(y)), y] - np.log(sums[:, 0])
    return exp / sums, float(-log_probs.mean()) if len(y) else 0.0


class NumpyLearner(Learner):
    """Mini-batch SGD (optional momentum and L2 weight decay) on a :class:`NumpyModel`.

    Batches are shuffled by a per-learner ``numpy`` generator seeded with ``seed``: each fit
    continues the same stream, so successive rounds see different orders while a whole run
    stays reproducible. Momentum buffers start from zero at every fit (local optimizer state
    is not carried across rounds).

    Args:
        model: the :class:`NumpyModel` to train (updated in place).
        data: the node's data; features are flattened to ``model.input_dim`` values.
        seed: seed of the batch order.
        lr: learning rate.
        momentum: heavy-ball momentum in ``[0, 1)``.
        weight_decay: L2 coefficient added to the gradient of every parameter.
        batch_size: overrides ``data.batch_size``.
    """

    name = "numpy"

    def __init__(
        self,
        model: NumpyModel,
        data: NodeData,
        *,
        seed: int = 0,
        lr: float = 0.1,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        batch_size: int | None = None,
    ) -> None:
        if not isinstance(model, NumpyModel):
            raise TypeError(f"the numpy learner trains a p2pfl NumpyModel, got {type(model).__name__}")
        if not lr > 0 or not 0 <= momentum < 1 or not weight_decay >= 0:
            raise ValueError(f"need lr > 0, 0 <= momentum < 1, weight_decay >= 0; got {lr}, {momentum}, {weight_decay}")
        super().__init__(model, data, seed=seed, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.model: NumpyModel = model
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.batch_size = int(batch_size or data.batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        self._x_train, self._y_train = self._arrays("train")
        self._x_test, self._y_test = self._arrays("test")
        self._rng = np.random.default_rng(seed)
        self._stop = threading.Event()

    def _arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if len(self.data.train if split == "train" else self.data.test) == 0:
            # A node may hold no examples (skewed partitions): nothing to convert.
            return np.zeros((0, self.model.input_dim), np.float32), np.zeros(0, np.int64)
        x, y = self.data.numpy(split)
        x = np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float32)
        if x.shape[1] != self.model.input_dim:
            raise ValueError(
                f"{split} examples have {x.shape[1]} features but the model expects input_dim={self.model.input_dim}"
            )
        if len(y) and (y.min() < 0 or y.max() >= self.model.num_classes):
            raise ValueError(f"{split} labels must lie in [0, {self.model.num_classes}), got [{y.min()}, {y.max()}]")
        return x, y

    # ------------------------------------------------------------------ parameters

    def get_parameters(self) -> Parameters:
        return {name: value.copy() for name, value in self.model.params.items()}

    def set_parameters(self, parameters: Mapping[str, np.ndarray]) -> None:
        check_compatible(self.model.params, parameters)
        for name, value in parameters.items():
            if not is_float(np.asarray(value)):
                raise ParameterMismatchError(f"{name}: expected a floating dtype, got {np.asarray(value).dtype}")
        # Copy (and cast) every tensor before replacing any, so a failure leaves the model intact.
        new = {name: np.array(parameters[name], dtype=np.float32, copy=True) for name in self.model.params}
        self.model.params.update(new)

    # ------------------------------------------------------------------ training

    def interrupt(self) -> None:
        self._stop.set()

    def fit(self, epochs: int, correction: GradientCorrection | None = None) -> FitResult:
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        self._stop.clear()
        correction = None if correction is None or correction.is_zero else correction
        offsets = self._offsets(correction)
        velocity = {name: np.zeros_like(w) for name, w in self.model.params.items()} if self.momentum else {}
        n = len(self._y_train)
        steps = 0
        seen, loss_sum, correct = 0, 0.0, 0  # over the current epoch: the metrics report the last one
        for _ in range(epochs):
            order = self._rng.permutation(n)
            seen, loss_sum, correct = 0, 0.0, 0
            for start in range(0, n, self.batch_size):
                if self._stop.is_set():
                    return self._result(n, steps, seen, loss_sum, correct, interrupted=True)
                idx = order[start : start + self.batch_size]
                loss, batch_correct, grads = self.model.loss_and_grads(self._x_train[idx], self._y_train[idx])
                self._step(grads, correction, offsets, velocity)
                steps += 1
                seen += len(idx)
                loss_sum += loss * len(idx)
                correct += batch_correct
        return self._result(n, steps, seen, loss_sum, correct, interrupted=False)

    def _offsets(self, correction: GradientCorrection | None) -> dict[str, np.ndarray]:
        if correction is None:
            return {}
        unknown = sorted(set(correction.offset) - set(self.model.params))
        if unknown:
            raise ParameterMismatchError(f"gradient correction names unknown parameters: {', '.join(unknown)}")
        offsets = {}
        for name, value in correction.offset.items():
            offset = np.asarray(value, dtype=np.float32)
            if offset.shape != self.model.params[name].shape:
                expected = self.model.params[name].shape
                raise ParameterMismatchError(f"gradient correction {name}: shape {offset.shape} != {expected}")
            offsets[name] = offset
        return offsets

    def _step(
        self,
        grads: Parameters,
        correction: GradientCorrection | None,
        offsets: Mapping[str, np.ndarray],
        velocity: dict[str, np.ndarray],
    ) -> None:
        lr = np.float32(self.lr)
        for name, w in self.model.params.items():
            g = grads[name]
            if self.weight_decay:
                g += np.float32(self.weight_decay) * w
            if correction is not None:
                if correction.scale:
                    g += np.float32(correction.scale) * w
                if name in offsets:
                    g += offsets[name]
            if self.momentum:
                v = velocity[name]
                v *= np.float32(self.momentum)
                v += g
                g = v
            w -= lr * g  # in place: params are owned by the model, get_parameters hands out copies

    def _result(self, n: int, steps: int, seen: int, loss_sum: float, correct: int, *, interrupted: bool) -> FitResult:
        metrics = {"train_loss": loss_sum / seen, "train_accuracy": correct / seen} if seen else {}
        return FitResult(
            num_samples=n, num_steps=steps, learning_rate=self.lr, metrics=metrics, interrupted=interrupted
        )

    # ------------------------------------------------------------------ evaluation

    def evaluate(self) -> dict[str, float]:
        n = len(self._y_test)
        if n == 0:
            return {"loss": float("nan"), "accuracy": float("nan"), "num_samples": 0.0}
        loss_sum, correct = 0.0, 0
        for start in range(0, n, EVAL_CHUNK):
            x, y = self._x_test[start : start + EVAL_CHUNK], self._y_test[start : start + EVAL_CHUNK]
            logits, _ = self.model.forward(x)
            loss_sum += softmax_cross_entropy(logits, y)[1] * len(y)
            correct += int(np.count_nonzero(logits.argmax(axis=1) == y))
        return {"loss": loss_sum / n, "accuracy": correct / n, "num_samples": float(n)}

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class ids predicted for ``x`` (any shape whose rows flatten to ``input_dim``)."""
        x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
        return self.model.forward(x)[0].argmax(axis=1)


__all__ = ["NumpyLearner", "NumpyModel", "softmax_cross_entropy"]
