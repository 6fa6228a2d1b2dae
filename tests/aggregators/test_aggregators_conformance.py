"""Every aggregator of the package passes core's aggregator conformance suite."""

from __future__ import annotations

from p2pfl.testing.conformance.aggregator import AggregatorConformance
from p2pfl_aggregators.adaptive import FedAdagrad, FedAdam, FedAvgM, FedYogi
from p2pfl_aggregators.drift import FedProx, Scaffold
from p2pfl_aggregators.robust import (
    Bulyan,
    CenteredClipping,
    GeometricMedian,
    Krum,
    Median,
    MultiKrum,
    TrimmedMean,
    WeightedMedian,
)


class TestMedian(AggregatorConformance):
    def make_aggregator(self):
        return Median(f=1)


class TestWeightedMedian(AggregatorConformance):
    def make_aggregator(self):
        return WeightedMedian(f=1)


class TestTrimmedMean(AggregatorConformance):
    def make_aggregator(self):
        return TrimmedMean(beta=0.2)


class TestKrum(AggregatorConformance):
    def make_aggregator(self):
        return Krum(f=1)


class TestMultiKrum(AggregatorConformance):
    def make_aggregator(self):
        return MultiKrum(f=1, m=3)


class TestBulyan(AggregatorConformance):
    def make_aggregator(self):
        return Bulyan(f=1)


class TestGeometricMedian(AggregatorConformance):
    def make_aggregator(self):
        return GeometricMedian()


class TestCenteredClipping(AggregatorConformance):
    def make_aggregator(self):
        return CenteredClipping(tau=1.0, iterations=2)


class TestFedAvgM(AggregatorConformance):
    def make_aggregator(self):
        return FedAvgM()


class TestFedAdagrad(AggregatorConformance):
    def make_aggregator(self):
        return FedAdagrad()


class TestFedAdam(AggregatorConformance):
    def make_aggregator(self):
        return FedAdam()


class TestFedYogi(AggregatorConformance):
    def make_aggregator(self):
        return FedYogi()


class TestFedProx(AggregatorConformance):
    def make_aggregator(self):
        return FedProx(mu=0.1)


class TestScaffold(AggregatorConformance):
    def make_aggregator(self):
        return Scaffold(eta_g=1.0)
