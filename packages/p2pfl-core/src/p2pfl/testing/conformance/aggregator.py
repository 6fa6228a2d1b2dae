"""``AggregatorConformance``: the checks every aggregator plugin must pass.

Subclass it in a test module under a name starting with ``Test`` and implement
:meth:`AggregatorConformance.make_aggregator`::

    class TestMyAggregator(AggregatorConformance):
        def make_aggregator(self):
            return MyAggregator(beta=0.1)

The updates cover the dtypes and shapes real models have (float32, float16, bfloat16,
int64 counters, 0-d and empty tensors); each check builds fresh aggregators, so stateful
aggregators (server momentum) are checked from a clean state every time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from p2pfl.aggregation.aggregator import AggregationError, Aggregator
from p2pfl.parameters import Parameters, Update, copy_parameters, freeze, is_float, parameters_equal
from p2pfl.testing.conformance.rules import check, rule, violated

#: (name, shape, dtype) of the tensors of every update: what a small real model carries.
DEFAULT_TENSORS: tuple[tuple[str, tuple[int, ...], Any], ...] = (
    ("dense.weight", (4, 3), np.float32),
    ("dense.bias", (3,), np.float32),
    ("head.weight", (3, 2), np.float16),
    ("head.bias", (2,), ml_dtypes.bfloat16),
    ("bn.num_batches_tracked", (), np.int64),
    ("temperature", (), np.float32),
    ("unused", (0, 3), np.float32),
)


class AggregatorConformance:
    """Conformance suite for :class:`~p2pfl.aggregation.Aggregator` implementations (rules ``aggregator.*``)."""

    #: tensors of the generated updates (override to restrict dtypes your aggregator supports)
    tensors: Sequence[tuple[str, tuple[int, ...], Any]] = DEFAULT_TENSORS
    #: updates per aggregation (raised to the aggregator's ``min_updates`` when smaller)
    num_updates: int = 5

    # ------------------------------------------------------------------ to implement

    def make_aggregator(self) -> Aggregator:
        """A new aggregator, in its initial state."""
        raise NotImplementedError("subclasses of AggregatorConformance implement make_aggregator()")

    # ------------------------------------------------------------------ helpers

    def random_parameters(self, rng: np.random.Generator) -> Parameters:
        """One parameter set with :attr:`tensors` (floats ~ N(0, 1), integers in [0, 1000))."""
        params: Parameters = {}
        for name, shape, dtype in self.tensors:
            if np.dtype(dtype).kind in "iu":
                params[name] = rng.integers(0, 1000, size=shape).astype(dtype)
            else:
                params[name] = rng.normal(size=shape).astype(dtype)
        return params

    def make_updates(self, count: int | None = None, seed: int = 0) -> list[Update]:
        """``count`` updates from distinct nodes with different sample counts, in canonical order."""
        count = count if count is not None else self._count()
        rng = np.random.default_rng(seed)
        return [
            Update(
                self.random_parameters(rng),
                num_samples=10 * (i + 1),
                contributors=frozenset({f"node-{i:02d}"}),
                round=3,
            )
            for i in range(count)
        ]

    def global_parameters(self, seed: int = 100) -> Parameters:
        """The model the round started from (server optimizers need it)."""
        return self.random_parameters(np.random.default_rng(seed))

    def _count(self) -> int:
        with rule("aggregator.min-updates"):
            minimum = self.make_aggregator().min_updates
        return max(self.num_updates, minimum)

    def _aggregate(self, updates: Sequence[Update], rule_id: str, global_params: Parameters | None = None) -> Update:
        """Aggregate with a fresh aggregator, attributing failures to ``rule_id``."""
        with rule(rule_id):
            result = self.make_aggregator().aggregate(
                list(updates), self.global_parameters() if global_params is None else global_params
            )
        check(isinstance(result, Update), "aggregator.result", f"aggregate returned {type(result).__name__}")
        return result

    # ------------------------------------------------------------------ checks

    def test_result_contributors_and_samples(self) -> None:
        updates = self.make_updates()
        result = self._aggregate(updates, "aggregator.result")
        union = frozenset().union(*(u.contributors for u in updates))
        check(
            result.contributors == union,
            "aggregator.contributors",
            f"got {sorted(result.contributors)}, expected {sorted(union)}",
        )
        total = sum(u.num_samples for u in updates)
        check(result.num_samples == total, "aggregator.num-samples", f"got {result.num_samples}, expected {total}")

    def test_keeps_dtypes_and_shapes(self) -> None:
        updates = self.make_updates()
        expected = updates[0].parameters
        got = self._aggregate(updates, "aggregator.dtypes").parameters
        check(list(got) == list(expected), "aggregator.dtypes", f"names/order {list(got)} != {list(expected)}")
        for name, value in expected.items():
            out = got[name]
            check(isinstance(out, np.ndarray), "aggregator.dtypes", f"{name}: got {type(out).__name__}, not an ndarray")
            check(out.dtype == value.dtype, "aggregator.dtypes", f"{name}: dtype {value.dtype} became {out.dtype}")
            check(out.shape == value.shape, "aggregator.dtypes", f"{name}: shape {value.shape} became {out.shape}")

    def test_identical_updates(self) -> None:
        params = self.global_parameters(seed=7)
        updates = [
            Update(
                copy_parameters(params), num_samples=10 * (i + 1), contributors=frozenset({f"node-{i:02d}"}), round=3
            )
            for i in range(self._count())
        ]
        # The round started from these parameters too, so server optimizers have nothing to move.
        got = self._aggregate(updates, "aggregator.identical", global_params=copy_parameters(params)).parameters
        far = [n for n in params if n not in got or not _close(np.asarray(got[n]), params[n])]
        check(not far, "aggregator.identical", f"values changed: {', '.join(far)}")

    def test_deterministic(self) -> None:
        first = self._aggregate(self.make_updates(), "aggregator.deterministic")
        second = self._aggregate(self.make_updates(), "aggregator.deterministic")
        check(
            parameters_equal(first.parameters, second.parameters),
            "aggregator.deterministic",
            "two aggregations of the same updates differ",
        )
        check(
            (first.contributors, first.num_samples) == (second.contributors, second.num_samples),
            "aggregator.deterministic",
            "contributors or num_samples differ between two aggregations",
        )

    def test_too_few_updates(self) -> None:
        with rule("aggregator.min-updates"):
            aggregator = self.make_aggregator()
            minimum = aggregator.min_updates
        updates = self.make_updates(max(minimum - 1, 0))
        try:
            aggregator.aggregate(updates, self.global_parameters())
        except AggregationError as exc:
            message = str(exc)
            check(
                str(minimum) in message,
                "aggregator.min-updates",
                f"the message does not say that {minimum} updates are needed: {message!r}",
            )
        except Exception as exc:
            violated("aggregator.min-updates", f"{len(updates)} updates raised {type(exc).__name__}: {exc}")
        else:
            violated("aggregator.min-updates", f"{len(updates)} updates accepted with min_updates={minimum}")

    def test_does_not_mutate_inputs(self) -> None:
        updates = self.make_updates()
        snapshot = [(copy_parameters(u.parameters), u.num_samples, u.contributors) for u in updates]
        global_params = self.global_parameters()
        global_snapshot = copy_parameters(global_params)
        self._aggregate(updates, "aggregator.no-mutation", global_params=global_params)
        for i, (update, (params, num_samples, contributors)) in enumerate(zip(updates, snapshot)):
            check(
                parameters_equal(update.parameters, params),
                "aggregator.no-mutation",
                f"the parameters of input update {i} were modified",
            )
            check(
                (update.num_samples, update.contributors) == (num_samples, contributors),
                "aggregator.no-mutation",
                f"input update {i} changed",
            )
        check(
            parameters_equal(global_params, global_snapshot),
            "aggregator.no-mutation",
            "global_parameters was modified",
        )

    def test_accepts_read_only_inputs(self) -> None:
        updates = [Update(freeze(u.parameters), u.num_samples, u.contributors, u.round) for u in self.make_updates()]
        self._aggregate(updates, "aggregator.read-only", global_params=freeze(self.global_parameters()))

    def test_partial_aggregation(self) -> None:
        with rule("aggregator.partial"):
            aggregator = self.make_aggregator()
        if not aggregator.supports_partial:
            pytest.skip("the aggregator does not support partial aggregation")
        updates = self.make_updates()
        # Uneven disjoint groups, one of a single update: [u0], [u1, u2], [u3, ...]
        groups = [updates[:1], updates[1:3], updates[3:]]
        groups = [g for g in groups if g]
        if min(len(g) for g in groups) < aggregator.min_updates:
            pytest.skip(f"groups smaller than min_updates={aggregator.min_updates}")
        global_params = self.global_parameters()
        partials = [self._aggregate(g, "aggregator.partial", global_params) for g in groups]
        merged = self._aggregate(partials, "aggregator.partial", global_params)
        whole = self._aggregate(updates, "aggregator.partial", global_params)
        check(
            (merged.contributors, merged.num_samples) == (whole.contributors, whole.num_samples),
            "aggregator.partial",
            f"contributors/num_samples {sorted(merged.contributors)}/{merged.num_samples} != "
            f"{sorted(whole.contributors)}/{whole.num_samples}",
        )
        far = [n for n in whole.parameters if not _close(merged.parameters[n], whole.parameters[n], partial=True)]
        check(not far, "aggregator.partial", f"partial-then-merged differs from all-at-once: {', '.join(far)}")


def _close(got: np.ndarray, expected: np.ndarray, *, partial: bool = False) -> bool:
    """Equal within the rounding of ``expected``'s dtype (integers: exact, or +-1 after partial rounding)."""
    if got.shape != expected.shape:
        return False
    a, b = np.asarray(got).astype(np.float64), np.asarray(expected).astype(np.float64)
    if not is_float(expected):
        return bool(np.all(np.abs(a - b) <= (1 if partial else 0)))
    eps = float(ml_dtypes.finfo(expected.dtype).eps)
    return bool(np.allclose(a, b, rtol=8 * eps, atol=8 * eps))
