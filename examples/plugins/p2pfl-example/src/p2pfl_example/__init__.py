"""p2pfl-example: an example third-party p2pfl plugin.

It provides the ``norm-clipped-mean`` aggregator, the ``float16`` codec and a lifecycle
observer writing one CSV row per node and round (see ``README.md``). p2pfl loads it through
the ``p2pfl`` entry point (:mod:`p2pfl_example.plugin`).
"""

from p2pfl_example.__about__ import __version__

__all__ = ["__version__"]
