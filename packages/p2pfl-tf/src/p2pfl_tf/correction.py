"""Core's :class:`~p2pfl.learning.GradientCorrection` for Keras 3 optimizers.

Keras' own ``train_step`` is kept (losses, regularizers, loss scaling and metrics stay
Keras' business); the correction is added where its gradients meet the optimizer. The
optimizer's ``apply(grads, trainable_variables)``, through which every Keras 3 optimizer
update goes (``apply_gradients`` calls it), is wrapped on the instance:

    g[name] += scale * w[name] + offset[name]     (trainable variables only, every step)

before the optimizer's own processing (clipping, weight decay, the update rule). For a
``LossScaleOptimizer`` the inner optimizer is wrapped, where gradients are already unscaled;
an optimizer's own ``loss_scale_factor`` is compensated for.

``scale`` and the offsets live in ``tf.Variable`` s, so a traced train step reads new values
every round without retracing. Which terms exist (scale or not, which offsets) is decided
when the step is traced; :meth:`GradientCorrector.configure` reports when that changes, and
the learner then drops Keras' cached train function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from p2pfl.learning.learner import GradientCorrection
from p2pfl.parameters import ParameterMismatchError
from p2pfl_tf._tfenv import tf
from p2pfl_tf.weights import numpy_dtype

#: attribute marking a wrapped ``apply`` (its value is the corrector).
_MARK = "__p2pfl_tf_corrector__"

#: (scale term present, names with an offset): what a traced train step adds.
Mode = tuple[bool, frozenset[str]]
_NO_CORRECTION: Mode = (False, frozenset())


def _innermost(optimizer: Any) -> Any:
    """The optimizer that sees unscaled gradients (a ``LossScaleOptimizer`` wraps another)."""
    inner = getattr(optimizer, "inner_optimizer", None)
    return optimizer if inner is None else _innermost(inner)


class GradientCorrector:
    """Adds a :class:`GradientCorrection` to the gradients ``model.optimizer`` applies.

    Args:
        model: a compiled Keras model; its optimizer is wrapped in place, once.
        names: the model's weights with their parameter names.
    """

    def __init__(self, model: Any, names: Sequence[tuple[str, Any]]) -> None:
        self._model = model
        self._target = _innermost(model.optimizer)
        if getattr(self._target.apply, _MARK, None) is not None:
            raise ValueError(
                "this model's optimizer already serves another KerasLearner; give each node its own model "
                "instance compiled with its own optimizer"
            )
        self._by_id = {id(variable): name for name, variable in names}
        self._variables = dict(names)
        self._scale = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="p2pfl_correction_scale")
        self._offsets: dict[str, Any] = {}
        self.mode: Mode = _NO_CORRECTION
        original = self._target.apply

        def apply(grads: Sequence[Any], trainable_variables: Sequence[Any] | None = None) -> Any:
            # Runs while Keras traces the train step: self.mode is read once per trace.
            if self.mode != _NO_CORRECTION:
                grads = self._corrected(grads, trainable_variables)
            return original(grads, trainable_variables)

        setattr(apply, _MARK, self)
        self._target.apply = apply

    def configure(self, correction: GradientCorrection | None) -> bool:
        """Load ``correction`` for the next fit; True when traced train steps must be rebuilt."""
        if correction is None or correction.is_zero:
            mode = _NO_CORRECTION
        else:
            offsets = self._validated(correction.offset)
            mode = (correction.scale != 0.0, frozenset(offsets))
            self._scale.assign(float(correction.scale))
            for name, value in offsets.items():
                if name not in self._offsets:
                    self._offsets[name] = tf.Variable(value, trainable=False, name="p2pfl_correction_offset")
                else:
                    self._offsets[name].assign(value)
        changed = mode != self.mode
        self.mode = mode
        return changed

    def _validated(self, offset: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        trainable = {id(v) for v in self._model.trainable_weights}
        unknown = sorted(n for n in offset if n not in self._variables)
        if unknown:
            raise ParameterMismatchError(f"gradient correction names unknown parameters: {', '.join(unknown)}")
        frozen = sorted(n for n in offset if id(self._variables[n]) not in trainable)
        if frozen:
            raise ParameterMismatchError(
                f"gradient correction names non-trainable parameters (buffers): {', '.join(frozen)}"
            )
        values = {}
        for name, value in offset.items():
            variable = self._variables[name]
            array = np.asarray(value, dtype=numpy_dtype(variable))
            if tuple(array.shape) != tuple(variable.shape):
                raise ParameterMismatchError(
                    f"gradient correction {name}: shape {tuple(array.shape)} != parameter shape {tuple(variable.shape)}"
                )
            values[name] = array
        return values

    def _corrected(self, grads: Sequence[Any], variables: Sequence[Any] | None) -> list[Any]:
        if variables is None:  # an optimizer built earlier may be called with gradients only
            variables = self._model.trainable_weights
        use_scale, offset_names = self.mode
        loss_scale = getattr(self._target, "loss_scale_factor", None)
        corrected = []
        for grad, variable in zip(grads, variables):
            name = self._by_id.get(id(variable))
            if grad is None or name is None or not (use_scale or name in offset_names):
                corrected.append(grad)
                continue
            grad = tf.convert_to_tensor(grad)  # densifies IndexedSlices (embeddings)
            term = None
            if use_scale:
                term = tf.cast(self._scale, grad.dtype) * tf.cast(tf.convert_to_tensor(variable), grad.dtype)
            if name in offset_names:
                offset = tf.cast(self._offsets[name], grad.dtype)
                term = offset if term is None else term + offset
            if loss_scale is not None:  # the optimizer divides what it receives by loss_scale_factor
                term = term * tf.cast(loss_scale, grad.dtype)
            corrected.append(grad + term)
        return corrected
