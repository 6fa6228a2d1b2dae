"""p2pfl-aggregators: every aggregator beyond FedAvg, as a p2pfl plugin.

Families live in their own modules: :mod:`p2pfl_aggregators.robust` (Byzantine-tolerant),
:mod:`p2pfl_aggregators.adaptive` (server momentum and adaptive server optimizers) and
:mod:`p2pfl_aggregators.drift` (FedProx, SCAFFOLD). Importing this package imports nothing
else, so that listing plugins stays cheap; the plugin registers lazy targets.
"""

from p2pfl_aggregators.__about__ import __version__

__all__ = ["__version__"]
