"""Aggregators: the interface aggregator plugins implement, and FedAvg."""

from p2pfl.aggregation.aggregator import AggregationError, Aggregator
from p2pfl.aggregation.fedavg import FedAvg, weighted_mean

__all__ = ["AggregationError", "Aggregator", "FedAvg", "weighted_mean"]
