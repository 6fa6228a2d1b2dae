"""The conformance rules, and how a broken rule is reported.

Every check of a conformance suite belongs to one rule with a stable id (``learner.set-shape``).
A failing check fails the test with ``conformance: <rule text> (rule <id>): <details>``, so
a plugin author sees at once which promise their component breaks; an unexpected exception
raised by the component inside a check is reported the same way, with its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import pytest

#: rule id -> what the component must do. ``docs/testing.md`` lists the same rules.
RULES: dict[str, str] = {
    # learners
    "learner.get-numpy": "get_parameters must return a dict of name -> numpy array with wire dtypes, in a stable order",
    "learner.get-copies": "get_parameters must return writable copies: mutating them must not change the model",
    "learner.roundtrip": "set_parameters then get_parameters must give back the same names, order, dtypes and bytes",
    "learner.set-shape": "set_parameters must reject wrong shapes with a ParameterMismatchError naming the parameter",
    "learner.set-missing": "set_parameters must reject a missing parameter with a ParameterMismatchError naming it",
    "learner.trainable-names": "trainable_names must be a non-empty subset of the parameter names",
    "learner.fit-result": "fit must return a FitResult with num_samples == len(train) and num_steps > 0",
    "learner.fit-changes": "fit must change the trainable parameters",
    "learner.evaluate": "evaluate must return finite 'loss' and 'accuracy' in [0, 1] and leave the parameters alone",
    "learner.learns": "fit must improve the model on easy synthetic data (lower loss, accuracy above the threshold)",
    "learner.reproducible": "two learners with one seed and the same initial parameters must fit to identical bits",
    "learner.correction-offset": "fit must add GradientCorrection.offset to every trainable parameter's gradient",
    "learner.correction-scale": "fit must add GradientCorrection.scale * w to every trainable parameter's gradient",
    "learner.interrupt": "interrupt() from another thread must make a running fit return soon with interrupted=True",
    "learner.interrupt-reusable": "an interrupt must not outlive its fit: the next fit runs normally",
    # aggregators
    "aggregator.result": "aggregate must return an Update",
    "aggregator.contributors": "the result's contributors must be the union of the inputs' contributors",
    "aggregator.num-samples": "the result's num_samples must be the sum of the inputs' num_samples",
    "aggregator.dtypes": "the result must hold every tensor as a numpy array with its name, order, shape and dtype",
    "aggregator.identical": "aggregating identical updates must return the same values",
    "aggregator.deterministic": "aggregating the same updates twice must give bitwise-identical results",
    "aggregator.min-updates": "fewer than min_updates updates must raise AggregationError saying how many are needed",
    "aggregator.no-mutation": "aggregate must not modify its input updates",
    "aggregator.read-only": "aggregate must accept read-only input arrays (received updates are immutable)",
    "aggregator.partial": "with supports_partial, aggregating partial aggregates of disjoint groups must equal "
    "aggregating all updates at once",
}


def violated(rule: str, detail: str = "", *, pytrace: bool = False) -> NoReturn:
    """Fail the current test for breaking ``rule``."""
    message = f"conformance: {RULES[rule]} (rule {rule})"
    pytest.fail(f"{message}: {detail}" if detail else message, pytrace=pytrace)


def check(condition: object, rule: str, detail: str = "") -> None:
    """Fail the current test for breaking ``rule`` unless ``condition`` holds."""
    if not condition:
        violated(rule, detail)


@contextmanager
def rule(rule_id: str) -> Iterator[None]:
    """Attribute any exception the component raises inside the block to ``rule_id``."""
    if rule_id not in RULES:
        raise KeyError(f"unknown conformance rule {rule_id!r}")
    try:
        yield
    except (pytest.fail.Exception, pytest.skip.Exception):
        raise
    except Exception as exc:
        # pytrace=True keeps the component's own traceback (shown as the chained cause).
        violated(rule_id, f"raised {type(exc).__name__}: {exc}", pytrace=True)
