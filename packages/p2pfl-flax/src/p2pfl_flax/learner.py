"""The ``flax`` learner: Flax NNX models trained with optax through one jit-compiled step.

Design notes:

* The model is split once into graph definitions (train and eval mode) and three state
  groups (see :mod:`p2pfl_flax.state`); training is a pure function of those arrays,
  compiled by :func:`jax.jit` once (per batch shape) and reused every round, and by every
  learner of the same architecture and options (see :mod:`p2pfl_flax.steps`).
* The round's :class:`~p2pfl.learning.learner.GradientCorrection` enters the compiled step
  as arrays (a scale and one offset per parameter, zeros when there is none), so FedProx
  or SCAFFOLD never cause a recompilation.
* Every learner owns its arrays, optimizer state, numpy generator and stop event: nodes
  may train concurrently in threads of one process.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from p2pfl.learning.learner import FitResult, GradientCorrection, Learner, NodeData
from p2pfl.parameters import Parameters, check_compatible
from p2pfl_flax import _jaxenv  # noqa: F401  (sets JAX_PLATFORMS before JAX loads)

# isort: split
import jax
import jax.numpy as jnp
from flax import nnx

from p2pfl_flax.data import NumpyBatches
from p2pfl_flax.options import FlaxOptions
from p2pfl_flax.state import exchanged_names, leaf_names, split_model
from p2pfl_flax.steps import compiled_steps


class FlaxLearner(Learner):
    """Learner for :class:`flax.nnx.Module` classifiers (logits out, integer labels in).

    Args:
        model: the NNX module; its input is one batch of ``data`` shaped
            ``(batch, *input_shape)``. The learner keeps it in sync with the trained weights
            (after :meth:`fit` and :meth:`set_parameters`) and leaves it in eval mode.
        data: the node's partitions.
        seed: seeds the numpy generator that shuffles the training data.
        **options: see :class:`p2pfl_flax.options.FlaxOptions` (``optimizer``, ``lr``,
            ``momentum``, ``nesterov``, ``weight_decay``, ``optimizer_state``).
    """

    name = "flax"

    def __init__(self, model: nnx.Module, data: NodeData, *, seed: int = 0, **options: Any) -> None:
        if not isinstance(model, nnx.Module):
            raise TypeError(
                f"the flax learner needs a flax.nnx.Module, got {type(model).__qualname__} "
                "(wrap a Linen module with flax.nnx.bridge.ToNNX)"
            )
        super().__init__(model, data, seed=seed, **options)
        self.opts = FlaxOptions.parse(dict(options))
        self._split = split_model(model)
        self._names = exchanged_names(model)
        self._param_names = leaf_names(self._split.params)
        self._rest_names = leaf_names(self._split.rest)
        self._steps = compiled_steps(self._split.graphdef_train, self._split.graphdef_eval, self.opts)
        self._tx = self._steps.tx
        self._opt_state: Any = None
        self._train_data = NumpyBatches(data, "train")
        self._test_data = NumpyBatches(data, "test")
        self._rng = np.random.default_rng(seed)
        self._stop = threading.Event()
        self._zero_correction = self._correction_arrays(None)

    @property
    def trace_counts(self) -> dict[str, int]:
        """How many times the train and eval steps were traced (compiled) so far.

        Learners with the same architecture and options share their compiled steps, and so
        these counts.
        """
        return dict(self._steps.traces)

    # ------------------------------------------------------------------ parameters

    def _current(self) -> dict[str, jax.Array]:
        values = dict(zip(self._param_names, jax.tree.leaves(self._split.params)))
        values.update(zip(self._rest_names, jax.tree.leaves(self._split.rest)))
        return {name: values[name] for name in self._names}

    def get_parameters(self) -> Parameters:
        """Params, batch statistics and other variables (not RNG state), as numpy copies."""
        return {name: np.array(value) for name, value in self._current().items()}

    def set_parameters(self, parameters: Mapping[str, np.ndarray]) -> None:
        """Load ``parameters`` (names and shapes must match; values take the model's dtypes)."""
        current = self._current()
        check_compatible(current, parameters)  # type: ignore[arg-type]  # jax arrays have .shape too

        def load(names: list[str], tree: Any) -> Any:
            leaves = [jnp.array(np.asarray(parameters[n]), dtype=current[n].dtype) for n in names]
            return jax.tree.unflatten(jax.tree.structure(tree), leaves)

        self._split.params = load(self._param_names, self._split.params)
        self._split.rest = load(self._rest_names, self._split.rest)
        self._sync_model()

    def trainable_names(self) -> list[str]:
        """The :class:`flax.nnx.Param` leaves, in model order."""
        trainable = set(self._param_names)
        return [name for name in self._names if name in trainable]

    def _sync_model(self) -> None:
        nnx.update(self.model, self._split.params, self._split.rngs, self._split.rest)

    # ------------------------------------------------------------------ training

    def _correction_arrays(self, correction: GradientCorrection | None) -> tuple[jax.Array, Any]:
        """``(scale, offset tree)`` for the compiled step; offsets in at least float32."""
        params = self._split.params
        offsets = {} if correction is None else dict(correction.offset)
        unknown = sorted(set(offsets) - set(self._param_names))
        if unknown:
            raise ValueError(
                f"gradient correction names non-trainable or unknown parameters: {', '.join(unknown)}; "
                f"trainable: {', '.join(self.trainable_names())}"
            )
        leaves = []
        for name, leaf in zip(self._param_names, jax.tree.leaves(params)):
            dtype = jnp.promote_types(leaf.dtype, jnp.float32)
            if name not in offsets:
                leaves.append(jnp.zeros(leaf.shape, dtype))
                continue
            value = np.asarray(offsets[name])
            if value.shape != leaf.shape:
                raise ValueError(f"gradient correction for {name}: shape {value.shape} != parameter {leaf.shape}")
            leaves.append(jnp.array(value, dtype=dtype))
        scale = jnp.asarray(0.0 if correction is None else correction.scale, jnp.float32)
        return scale, jax.tree.unflatten(jax.tree.structure(params), leaves)

    def fit(self, epochs: int, correction: GradientCorrection | None = None) -> FitResult:
        """Train for ``epochs`` over the shuffled train split; stops within one step of :meth:`interrupt`."""
        self._stop.clear()
        scale, offset = self._zero_correction if correction is None else self._correction_arrays(correction)
        split = self._split
        opt_state = self._opt_state
        if opt_state is None or self.opts.optimizer_state == "reset":
            opt_state = self._tx.init(split.params)
        params, rngs, rest = split.params, split.rngs, split.rest
        steps = seen = hits = 0
        loss_sum = 0.0
        interrupted = False
        for _ in range(epochs):
            for x, y in self._train_data.shuffled(self._rng):
                if self._stop.is_set():
                    interrupted = True
                    break
                params, rngs, rest, opt_state, loss, correct = self._steps.train(
                    params, rngs, rest, opt_state, x, y, scale, offset
                )
                # float()/int() wait for the step: an interrupt is then at most one step late.
                loss_sum += float(loss) * len(y)
                hits += int(correct)
                seen += len(y)
                steps += 1
            if interrupted:
                break
        split.params, split.rngs, split.rest = params, rngs, rest
        self._opt_state = opt_state
        self._sync_model()
        metrics = {"loss": loss_sum / seen, "accuracy": hits / seen} if seen else {}
        return FitResult(
            num_samples=self.num_samples,
            num_steps=steps,
            learning_rate=float(self.opts.lr),
            metrics=metrics,
            interrupted=interrupted,
        )

    def evaluate(self) -> dict[str, float]:
        """Mean cross-entropy ``loss`` and ``accuracy`` on the test split (eval mode)."""
        n = len(self._test_data)
        if n == 0:
            return {"loss": float("nan"), "accuracy": float("nan"), "num_samples": 0.0}
        split = self._split
        loss_sum = hits = 0.0
        for x, y, mask in self._test_data.padded():
            loss, correct = self._steps.evaluate(split.params, split.rngs, split.rest, x, y, mask)
            loss_sum += float(loss)
            hits += float(correct)
        return {"loss": loss_sum / n, "accuracy": hits / n, "num_samples": float(n)}

    def interrupt(self) -> None:
        """Make a running :meth:`fit` return after its current step (thread-safe)."""
        self._stop.set()
