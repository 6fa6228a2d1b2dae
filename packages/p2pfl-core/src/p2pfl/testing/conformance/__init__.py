"""Conformance suites: :class:`~p2pfl.testing.conformance.learner.LearnerConformance` and
:class:`~p2pfl.testing.conformance.aggregator.AggregatorConformance` (rules in
:mod:`p2pfl.testing.conformance.rules`). Import them from :mod:`p2pfl.testing`."""
