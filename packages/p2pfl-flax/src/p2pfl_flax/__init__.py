"""p2pfl-flax: a JAX / Flax (NNX) + optax learner for p2pfl.

Importing this package is cheap: JAX is imported only by :mod:`p2pfl_flax.learner` and
:mod:`p2pfl_flax.models`, so ``p2pfl plugins list`` never loads it.
"""

from p2pfl_flax.__about__ import __version__

__all__ = ["__version__"]
