"""``LearnerConformance``: the checks every learner plugin must pass.

Subclass it in a test module under a name starting with ``Test`` and implement
:meth:`LearnerConformance.make_learner`; pytest then runs every check on your learner::

    class TestMyLearner(LearnerConformance):
        def make_learner(self, node_data, seed):
            model = build_model(in_features=8, classes=node_data.num_classes)
            return MyLearner(model, node_data, seed=seed, lr=0.1)

The data is :func:`p2pfl.testing.data.synthetic_node_data` (Gaussian blobs, flat float32
features in column ``"x"``); tune the class attributes below if your learner needs more
epochs or another input shape.
"""

from __future__ import annotations

import math
import numbers
import threading
import time
from typing import Any

import numpy as np
import pytest

from p2pfl.learning.learner import FitResult, GradientCorrection, Learner, NodeData
from p2pfl.parameters import (
    WIRE_DTYPES,
    ParameterMismatchError,
    Parameters,
    copy_parameters,
    is_float,
    parameters_equal,
)
from p2pfl.testing.conformance.rules import check, rule, violated


class LearnerConformance:
    """Conformance suite for :class:`~p2pfl.learning.Learner` implementations (rules ``learner.*``)."""

    #: keyword arguments of :func:`~p2pfl.testing.data.synthetic_node_data`
    data_options: dict[str, Any] = {"num_train": 120, "num_test": 60, "num_features": 8, "num_classes": 3}
    #: epochs the learner gets to learn the synthetic data, and the test accuracy it must reach
    learn_epochs: int = 10
    learn_min_accuracy: float = 0.8
    #: the constant added to every gradient by ``learner.correction-offset``
    correction_offset: float = 10.0
    #: the ``scale`` of ``learner.correction-scale`` (acts as weight decay; keep ``lr * scale < 1``)
    correction_scale: float = 1.0
    #: epochs of the fit that gets interrupted (it must never finish on its own)
    interrupt_epochs: int = 100_000
    #: how long an interrupted fit may take to return, in seconds (generous on purpose)
    interrupt_deadline: float = 60.0

    # ------------------------------------------------------------------ to implement

    def make_learner(self, node_data: NodeData, seed: int) -> Learner:
        """A new learner (and a new model) for ``node_data``, seeded with ``seed``."""
        raise NotImplementedError("subclasses of LearnerConformance implement make_learner(node_data, seed)")

    # ------------------------------------------------------------------ fixtures and helpers

    @pytest.fixture(scope="class")
    def node_data(self, make_node_data: Any) -> NodeData:
        """The synthetic data every check uses (override to change it; learners must not modify it)."""
        return make_node_data(**self.data_options)

    def _trainable(self, learner: Learner, params: Parameters) -> list[str]:
        return [n for n in learner.trainable_names() if n in params and params[n].size and is_float(params[n])]

    def _pair(self, node_data: NodeData) -> tuple[Learner, Learner]:
        """Two learners with one seed and the same initial parameters."""
        first, second = self.make_learner(node_data, 0), self.make_learner(node_data, 0)
        second.set_parameters(first.get_parameters())
        return first, second

    # ------------------------------------------------------------------ parameters

    def test_get_parameters_are_numpy(self, node_data: NodeData) -> None:
        with rule("learner.get-numpy"):
            learner = self.make_learner(node_data, 0)
            params, again = learner.get_parameters(), learner.get_parameters()
        check(params, "learner.get-numpy", "get_parameters returned no parameters")
        for name, value in params.items():
            check(isinstance(name, str), "learner.get-numpy", f"parameter name {name!r} is not a string")
            check(isinstance(value, np.ndarray), "learner.get-numpy", f"{name}: got {type(value).__name__}")
            check(
                value.dtype in WIRE_DTYPES.values(), "learner.get-numpy", f"{name}: dtype {value.dtype} cannot travel"
            )
        check(list(params) == list(again), "learner.get-numpy", "two calls returned the names in different orders")

    def test_get_parameters_returns_copies(self, node_data: NodeData) -> None:
        with rule("learner.get-copies"):
            learner = self.make_learner(node_data, 0)
            before = copy_parameters(learner.get_parameters())
            handed_out = learner.get_parameters()
        for name, value in handed_out.items():
            check(value.flags.writeable, "learner.get-copies", f"{name} is read-only")
            if value.size:
                flipped = np.ascontiguousarray(value).copy()
                flipped.reshape(-1).view(np.uint8)[...] ^= 1  # changes every byte, valid for every dtype
                value[...] = flipped
        with rule("learner.get-copies"):
            after = learner.get_parameters()
        changed = [n for n in before if before[n].tobytes() != after[n].tobytes()]
        check(
            not changed, "learner.get-copies", f"mutating the returned arrays changed the model: {', '.join(changed)}"
        )

    def test_set_get_roundtrip(self, node_data: NodeData) -> None:
        rng = np.random.default_rng(1)
        with rule("learner.roundtrip"):
            learner = self.make_learner(node_data, 0)
            new = {name: _random_like(value, rng) for name, value in learner.get_parameters().items()}
            learner.set_parameters(new)
            got = learner.get_parameters()
        check(list(got) == list(new), "learner.roundtrip", f"names/order changed: {list(new)} -> {list(got)}")
        for name, value in new.items():
            check(
                got[name].dtype == value.dtype, "learner.roundtrip", f"{name}: dtype {value.dtype} -> {got[name].dtype}"
            )
            check(
                got[name].shape == value.shape, "learner.roundtrip", f"{name}: shape {value.shape} -> {got[name].shape}"
            )
        check(parameters_equal(new, got), "learner.roundtrip", "the values read back differ from the values set")

    def test_set_rejects_wrong_shape(self, node_data: NodeData) -> None:
        with rule("learner.set-shape"):
            learner = self.make_learner(node_data, 0)
            params = learner.get_parameters()
        for name, value in params.items():
            bad = dict(params)
            bad[name] = np.zeros((*value.shape, 2), dtype=value.dtype)
            _expect_mismatch(learner, bad, name, "learner.set-shape", f"{name} with shape {bad[name].shape}")

    def test_set_rejects_missing_parameter(self, node_data: NodeData) -> None:
        with rule("learner.set-missing"):
            learner = self.make_learner(node_data, 0)
            params = learner.get_parameters()
        for name in params:
            partial = {n: v for n, v in params.items() if n != name}
            _expect_mismatch(learner, partial, name, "learner.set-missing", f"parameters without {name}")

    def test_trainable_names_are_parameters(self, node_data: NodeData) -> None:
        with rule("learner.trainable-names"):
            learner = self.make_learner(node_data, 0)
            names, trainable = list(learner.get_parameters()), list(learner.trainable_names())
        check(trainable, "learner.trainable-names", "no trainable parameters")
        unknown = [n for n in trainable if n not in names]
        check(not unknown, "learner.trainable-names", f"not parameters: {', '.join(unknown)}")

    # ------------------------------------------------------------------ fit and evaluate

    def test_fit_result(self, node_data: NodeData) -> None:
        with rule("learner.fit-result"):
            learner = self.make_learner(node_data, 0)
            result = learner.fit(1)
        check(isinstance(result, FitResult), "learner.fit-result", f"got {type(result).__name__}")
        check(
            result.num_samples == len(node_data.train),
            "learner.fit-result",
            f"num_samples={result.num_samples}, train split has {len(node_data.train)}",
        )
        check(result.num_steps > 0, "learner.fit-result", f"num_steps={result.num_steps}")
        check(not result.interrupted, "learner.fit-result", "an uninterrupted fit reported interrupted=True")
        check(learner.num_samples == len(node_data.train), "learner.fit-result", f"num_samples={learner.num_samples}")
        for key, value in result.metrics.items():
            check(isinstance(value, numbers.Real), "learner.fit-result", f"metric {key!r} is {type(value).__name__}")

    def test_fit_changes_trainable_parameters(self, node_data: NodeData) -> None:
        with rule("learner.fit-changes"):
            learner = self.make_learner(node_data, 0)
            before = copy_parameters(learner.get_parameters())  # copied: do not trust get-copies here
            learner.fit(1)
            after = learner.get_parameters()
            trainable = learner.trainable_names()
        changed = [n for n in trainable if before[n].tobytes() != after[n].tobytes()]
        check(changed, "learner.fit-changes", f"no trainable parameter changed ({', '.join(trainable)})")

    def test_evaluate(self, node_data: NodeData) -> None:
        with rule("learner.evaluate"):
            learner = self.make_learner(node_data, 0)
            before = copy_parameters(learner.get_parameters())
            metrics = learner.evaluate()
            after = learner.get_parameters()
        for key in ("loss", "accuracy"):
            check(key in metrics, "learner.evaluate", f"missing {key!r} in {sorted(metrics)}")
            value = metrics[key]
            check(isinstance(value, numbers.Real) and math.isfinite(value), "learner.evaluate", f"{key}={value!r}")
        check(0.0 <= metrics["accuracy"] <= 1.0, "learner.evaluate", f"accuracy={metrics['accuracy']}")
        check(parameters_equal(before, after), "learner.evaluate", "evaluate changed the parameters")

    def test_learns(self, node_data: NodeData) -> None:
        with rule("learner.learns"):
            learner = self.make_learner(node_data, 0)
            before = learner.evaluate()
            learner.fit(self.learn_epochs)
            after = learner.evaluate()
        detail = f"before: {before}, after {self.learn_epochs} epochs: {after}"
        check(after["loss"] < before["loss"], "learner.learns", "loss did not decrease; " + detail)
        check(
            after["accuracy"] >= self.learn_min_accuracy,
            "learner.learns",
            f"accuracy below {self.learn_min_accuracy}; {detail}",
        )

    def test_same_seed_is_reproducible(self, node_data: NodeData) -> None:
        with rule("learner.reproducible"):
            first, second = self._pair(node_data)
            for _ in range(2):  # the second fit checks that the seeded state advances identically too
                first.fit(1)
                second.fit(1)
                a, b = first.get_parameters(), second.get_parameters()
                differ = [n for n in a if n not in b or a[n].tobytes() != b[n].tobytes()]
                check(not differ, "learner.reproducible", f"parameters differ: {', '.join(differ)}")

    # ------------------------------------------------------------------ gradient correction

    def test_correction_offset_moves_against_it(self, node_data: NodeData) -> None:
        with rule("learner.correction-offset"):
            plain, corrected = self._pair(node_data)
            params = plain.get_parameters()
            trainable = self._trainable(plain, params)
            offset = {n: np.full(params[n].shape, self.correction_offset, dtype=params[n].dtype) for n in trainable}
            plain.fit(1)
            corrected.fit(1, GradientCorrection(scale=0.0, offset=offset))
            a, b = plain.get_parameters(), corrected.get_parameters()
        # A positive offset in the gradient pushes every parameter down relative to no correction.
        wrong = [n for n in trainable if not _mean(b[n]) - _mean(a[n]) < 0]
        check(not wrong, "learner.correction-offset", f"a +{self.correction_offset} offset did not lower: {wrong}")

    def test_correction_scale_shrinks(self, node_data: NodeData) -> None:
        with rule("learner.correction-scale"):
            plain, corrected = self._pair(node_data)
            trainable = self._trainable(plain, plain.get_parameters())
            plain.fit(1)
            corrected.fit(1, GradientCorrection(scale=self.correction_scale))
            a, b = plain.get_parameters(), corrected.get_parameters()
        # scale * w in the gradient is weight decay: the corrected model must end up smaller.
        norm_a = sum(_sq_norm(a[n]) for n in trainable)
        norm_b = sum(_sq_norm(b[n]) for n in trainable)
        check(
            norm_b < norm_a,
            "learner.correction-scale",
            f"scale={self.correction_scale}: squared norm {norm_b} with it, {norm_a} without",
        )

    # ------------------------------------------------------------------ interruption

    def test_interrupt_stops_fit(self, node_data: NodeData) -> None:
        with rule("learner.interrupt"):
            learner = self.make_learner(node_data, 0)
        started, done = threading.Event(), threading.Event()
        outcome: dict[str, Any] = {}

        def train() -> None:
            started.set()
            try:
                outcome["result"] = learner.fit(self.interrupt_epochs)
            except BaseException as exc:  # reported on the test thread
                outcome["error"] = exc
            finally:
                done.set()

        # Daemon: a learner that ignores interrupt() must not keep the test process alive.
        threading.Thread(target=train, name="conformance-fit", daemon=True).start()
        check(started.wait(self.interrupt_deadline), "learner.interrupt", "the training thread did not start")
        deadline = time.monotonic() + self.interrupt_deadline
        # interrupt() is repeated until fit returns: a learner may reset its flag when fit
        # starts, and the first call can land before that. Repeating makes the check race-free.
        while not done.is_set() and time.monotonic() < deadline:
            with rule("learner.interrupt"):
                learner.interrupt()
            done.wait(0.05)
        check(
            done.is_set(), "learner.interrupt", f"fit still running {self.interrupt_deadline:.0f} s after interrupt()"
        )
        if "error" in outcome:
            error = outcome["error"]
            violated("learner.interrupt", f"fit raised {type(error).__name__}: {error}")
        result = outcome["result"]
        check(isinstance(result, FitResult), "learner.interrupt", f"fit returned {type(result).__name__}")
        check(result.interrupted, "learner.interrupt", f"fit returned interrupted=False: {result}")

        # A stray interrupt() while no fit runs must not abort the next fit.
        with rule("learner.interrupt-reusable"):
            learner.interrupt()
            again = learner.fit(1)
        check(
            isinstance(again, FitResult) and not again.interrupted and again.num_steps > 0,
            "learner.interrupt-reusable",
            f"the fit after an interrupted one returned {again}",
        )


def _expect_mismatch(learner: Learner, params: Parameters, name: str, rule_id: str, what: str) -> None:
    try:
        learner.set_parameters(params)
    except ParameterMismatchError as exc:
        check(name in str(exc), rule_id, f"the error for {what} does not name {name!r}: {exc}")
    except Exception as exc:
        violated(rule_id, f"{what} raised {type(exc).__name__} instead of ParameterMismatchError: {exc}")
    else:
        violated(rule_id, f"{what} was accepted")


def _random_like(value: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random values of ``value``'s dtype and shape, different from what the model holds."""
    if value.dtype == np.bool_:
        return rng.integers(0, 2, size=value.shape).astype(np.bool_)
    if value.dtype.kind in "iu":
        return rng.integers(0, 100, size=value.shape).astype(value.dtype)
    if value.dtype.kind == "c":
        return (rng.normal(size=value.shape) + 1j * rng.normal(size=value.shape)).astype(value.dtype)
    return rng.normal(size=value.shape).astype(value.dtype)


def _mean(value: np.ndarray) -> float:
    return float(np.mean(value.astype(np.float64)))


def _sq_norm(value: np.ndarray) -> float:
    return float(np.sum(np.square(value.astype(np.float64))))
