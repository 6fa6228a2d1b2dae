"""The conformance suites catch broken components and say which rule they break.

Deliberately broken learners and aggregators are run through the suites with ``pytester``
(in a throw-away test session); each must fail exactly the checks of the rule it breaks,
with the rule named in the failure, while the reference implementations pass everything.
Also covers the fixtures of the ``p2pfl.testing`` pytest plugin.
"""

from __future__ import annotations

# Imported here, before pytester runs: its inner sessions drop the modules they import, and
# pyarrow cannot register datasets' extension types a second time.
import datasets  # noqa: F401
import numpy as np
import pytest

from p2pfl.aggregation import FedAvg
from p2pfl.plugins.manager import default_plugin_manager
from p2pfl.testing.conformance.rules import RULES

pytest_plugins = ["pytester"]

BROKEN_LEARNERS = """
import numpy as np
from p2pfl.learning import FitResult
from p2pfl.learning.numpy_learner import NumpyLearner, NumpyModel
from p2pfl.testing import LearnerConformance


class Base(LearnerConformance):
    learner_class = NumpyLearner

    def make_learner(self, node_data, seed):
        return self.learner_class(NumpyModel(8, node_data.num_classes, seed=seed), node_data, seed=seed)


class Aliasing(NumpyLearner):
    def get_parameters(self):
        return dict(self.model.params)  # the model's own arrays, not copies


class Lax(NumpyLearner):
    def set_parameters(self, parameters):
        self.model.params.update({n: np.asarray(v, np.float32) for n, v in parameters.items()})


class Deaf(NumpyLearner):
    def fit(self, epochs, correction=None):
        return super().fit(epochs)  # drops the gradient correction


class Stubborn(NumpyLearner):
    def interrupt(self):
        pass


class Sticky(NumpyLearner):
    pending = False

    def interrupt(self):
        self.pending = True  # remembered even when no fit is running
        super().interrupt()

    def fit(self, epochs, correction=None):
        if self.pending:
            self.pending = False
            return FitResult(num_samples=len(self.data.train), num_steps=0, interrupted=True)
        return super().fit(epochs, correction)


class Idle(NumpyLearner):
    def fit(self, epochs, correction=None):
        return FitResult(num_samples=0, num_steps=0)


class Unseeded(NumpyLearner):
    def fit(self, epochs, correction=None):
        self._rng = np.random.default_rng()
        return super().fit(epochs, correction)


class Crashing(NumpyLearner):
    def evaluate(self):
        raise RuntimeError("boom")


class TestReference(Base):
    pass


class TestAliasing(Base):
    learner_class = Aliasing


class TestLax(Base):
    learner_class = Lax


class TestDeaf(Base):
    learner_class = Deaf


class TestStubborn(Base):
    learner_class = Stubborn
    interrupt_epochs = 3  # finishes on its own, without noticing interrupt()


class TestSticky(Base):
    learner_class = Sticky


class TestIdle(Base):
    learner_class = Idle


class TestUnseeded(Base):
    learner_class = Unseeded


class TestCrashing(Base):
    learner_class = Crashing
"""

BROKEN_AGGREGATORS = """
import numpy as np
from p2pfl.aggregation import Aggregator, FedAvg
from p2pfl.parameters import Update
from p2pfl.testing import AggregatorConformance


def mean_update(updates, params):
    return Update(
        params,
        num_samples=sum(u.num_samples for u in updates),
        contributors=frozenset().union(*(u.contributors for u in updates)),
        round=0,
    )


class InPlace(FedAvg):
    def aggregate(self, updates, global_parameters=None):
        result = super().aggregate(updates, global_parameters)
        for name, value in result.parameters.items():
            updates[0].parameters[name][...] = value  # reuses an input as the output buffer
        return result


class Float64(Aggregator):
    def aggregate(self, updates, global_parameters=None):
        self.check_count(updates)
        names = updates[0].parameters
        return mean_update(updates, {n: np.mean([u.parameters[n].astype(np.float64) for u in updates], axis=0)
                                     for n in names})


class Unweighted(Aggregator):
    supports_partial = True  # wrong: the plain mean of means is not the mean

    def aggregate(self, updates, global_parameters=None):
        self.check_count(updates)
        names = updates[0].parameters
        params = {n: np.asarray(np.mean([u.parameters[n].astype(np.float64) for u in updates], axis=0))
                     .astype(updates[0].parameters[n].dtype) for n in names}
        return mean_update(updates, params)


class Uncounted(FedAvg):
    @property
    def min_updates(self):
        return 2

    def check_count(self, updates):
        pass


class Forgetful(FedAvg):
    def aggregate(self, updates, global_parameters=None):
        result = super().aggregate(updates, global_parameters)
        return Update(result.parameters, num_samples=len(updates), contributors=updates[0].contributors, round=0)


class Noisy(FedAvg):
    def aggregate(self, updates, global_parameters=None):
        result = super().aggregate(updates, global_parameters)
        noise = np.random.default_rng()
        params = {n: np.asarray(v + noise.normal(size=v.shape)).astype(v.dtype) for n, v in result.parameters.items()}
        return mean_update(updates, params)


class TestReference(AggregatorConformance):
    def make_aggregator(self):
        return FedAvg()


def suite(cls):
    return type("Suite", (AggregatorConformance,), {"make_aggregator": lambda self: cls()})


TestInPlace = type("TestInPlace", (suite(InPlace),), {})
TestFloat64 = type("TestFloat64", (suite(Float64),), {})
TestUnweighted = type("TestUnweighted", (suite(Unweighted),), {})
TestUncounted = type("TestUncounted", (suite(Uncounted),), {})
TestForgetful = type("TestForgetful", (suite(Forgetful),), {})
TestNoisy = type("TestNoisy", (suite(Noisy),), {})
"""

# class -> {failing test -> the rule its failure must name}; every other test must pass.
EXPECTED_LEARNER_FAILURES = {
    "TestReference": {},
    "TestAliasing": {"test_get_parameters_returns_copies": "learner.get-copies"},
    "TestLax": {
        "test_set_rejects_wrong_shape": "learner.set-shape",
        "test_set_rejects_missing_parameter": "learner.set-missing",
    },
    "TestDeaf": {
        "test_correction_offset_moves_against_it": "learner.correction-offset",
        "test_correction_scale_shrinks": "learner.correction-scale",
    },
    "TestStubborn": {"test_interrupt_stops_fit": "learner.interrupt"},
    "TestSticky": {"test_interrupt_stops_fit": "learner.interrupt-reusable"},
    "TestIdle": {
        "test_fit_result": "learner.fit-result",
        "test_fit_changes_trainable_parameters": "learner.fit-changes",
        "test_learns": "learner.learns",
        "test_correction_offset_moves_against_it": "learner.correction-offset",
        "test_correction_scale_shrinks": "learner.correction-scale",
        "test_interrupt_stops_fit": "learner.interrupt",
    },
    "TestUnseeded": {"test_same_seed_is_reproducible": "learner.reproducible"},
    "TestCrashing": {"test_evaluate": "learner.evaluate", "test_learns": "learner.learns"},
}

EXPECTED_AGGREGATOR_FAILURES = {
    "TestReference": {},
    "TestInPlace": {
        "test_does_not_mutate_inputs": "aggregator.no-mutation",
        "test_accepts_read_only_inputs": "aggregator.read-only",
        "test_partial_aggregation": "aggregator.partial",  # later aggregations see the overwritten inputs
    },
    "TestFloat64": {"test_keeps_dtypes_and_shapes": "aggregator.dtypes"},
    "TestUnweighted": {"test_partial_aggregation": "aggregator.partial"},
    "TestUncounted": {"test_too_few_updates": "aggregator.min-updates"},
    "TestForgetful": {
        "test_result_contributors_and_samples": "aggregator.contributors",
        "test_partial_aggregation": "aggregator.partial",
    },
    "TestNoisy": {
        "test_deterministic": "aggregator.deterministic",
        "test_identical_updates": "aggregator.identical",
        "test_partial_aggregation": "aggregator.partial",
    },
}


def run_suites(pytester: pytest.Pytester, source: str) -> dict[str, dict[str, str]]:
    """Run ``source`` as a test module; ``{class: {test: failure text}}`` for every test that ran."""
    pytester.makepyfile(test_suites=source)
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    outcomes: dict[str, dict[str, str]] = {}
    for report in reprec.getreports("pytest_runtest_logreport"):
        if report.when != "call" and not report.failed:
            continue
        _, cls, test = report.nodeid.split("::")
        if report.failed:
            outcomes.setdefault(cls, {})[test] = report.longreprtext
        else:
            outcomes.setdefault(cls, {}).setdefault(test, "")
    return outcomes


def check_outcomes(outcomes: dict[str, dict[str, str]], expected: dict[str, dict[str, str]]) -> None:
    assert set(outcomes) == set(expected), "every suite class must have run"
    for cls, failures in expected.items():
        failed = {test for test, text in outcomes[cls].items() if text}
        assert failed == set(failures), f"{cls}: failed {sorted(failed)}, expected {sorted(failures)}"
        for test, rule_id in failures.items():
            text = outcomes[cls][test]
            assert f"(rule {rule_id})" in text, f"{cls}.{test} does not name rule {rule_id}:\n{text}"
            assert RULES[rule_id] in text


def test_broken_learners_fail_the_rule_they_break(pytester: pytest.Pytester) -> None:
    outcomes = run_suites(pytester, BROKEN_LEARNERS)
    check_outcomes(outcomes, EXPECTED_LEARNER_FAILURES)
    # An exception raised by the component inside a check is attributed to the check's rule.
    assert "raised RuntimeError: boom" in outcomes["TestCrashing"]["test_evaluate"]


def test_broken_aggregators_fail_the_rule_they_break(pytester: pytest.Pytester) -> None:
    check_outcomes(run_suites(pytester, BROKEN_AGGREGATORS), EXPECTED_AGGREGATOR_FAILURES)


# --------------------------------------------------------------------------- fixtures


def test_plugin_manager_fixture_is_isolated(p2pfl_plugin_manager) -> None:
    plugins = p2pfl_plugin_manager.plugins
    assert list(plugins) == ["p2pfl-core"]
    assert p2pfl_plugin_manager.load("aggregators", "fedavg") is FedAvg


class _MeanPlugin:
    """A plugin object registering one aggregator."""

    from p2pfl import hookimpl

    @hookimpl
    def p2pfl_register_aggregators(self, register) -> None:
        register("conformance-test-mean", FedAvg, description="registered for one test")


def test_register_plugin_for_one_test(p2pfl_register_plugin, p2pfl_plugin_manager) -> None:
    info = p2pfl_register_plugin(_MeanPlugin(), name="one-test-plugin")
    assert p2pfl_plugin_manager.load("aggregators", "conformance-test-mean") is FedAvg
    assert info.provides == {"aggregators": ["conformance-test-mean"]}
    assert default_plugin_manager() is p2pfl_plugin_manager  # code using the default sees it too


def test_registration_ends_with_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_two="""
        from p2pfl import hookimpl
        from p2pfl.aggregation import FedAvg
        from p2pfl.plugins.manager import default_plugin_manager

        class Plugin:
            @hookimpl
            def p2pfl_register_aggregators(self, register):
                register("only-in-first-test", FedAvg)

        def test_first(p2pfl_register_plugin):
            p2pfl_register_plugin(Plugin(), name="temp")
            assert "only-in-first-test" in default_plugin_manager().registry("aggregators")

        def test_second(p2pfl_plugin_manager):
            assert "only-in-first-test" not in p2pfl_plugin_manager.registry("aggregators")
            from p2pfl.plugins import manager
            assert manager._default is None or "only-in-first-test" not in manager._default.registry("aggregators")
        """
    )
    pytester.inline_run("-p", "no:cacheprovider").assertoutcome(passed=2)


def test_make_node_data_is_seeded_and_learnable(make_node_data) -> None:
    a, b = make_node_data(seed=4), make_node_data(seed=4)
    xa, ya = a.numpy("train")
    xb, yb = b.numpy("train")
    assert xa.dtype == np.float32 and ya.dtype == np.int64 and xa.shape == (120, 8)
    assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    assert np.bincount(ya).tolist() == [40, 40, 40]
    # Learnable: the nearest class mean of the train split classifies the test split well.
    means = np.stack([xa[ya == c].mean(axis=0) for c in range(3)])
    xt, yt = a.numpy("test")
    predicted = np.argmin(((xt[:, None, :] - means[None]) ** 2).sum(axis=2), axis=1)
    assert (predicted == yt).mean() > 0.9
    shaped = make_node_data(num_features=6, input_shape=(2, 3))
    assert shaped.numpy("test")[0].shape == (60, 2, 3)
    with pytest.raises(ValueError, match="input_shape"):
        make_node_data(num_features=6, input_shape=(4, 2))


def test_docs_list_every_rule() -> None:
    from pathlib import Path

    docs = (Path(__file__).parents[2] / "docs" / "testing.md").read_text()
    missing = [rule_id for rule_id in RULES if f"`{rule_id}`" not in docs]
    assert not missing, f"docs/testing.md does not document: {missing}"
