"""p2pfl-tf: a TensorFlow / Keras 3 learner for p2pfl.

Importing this package is cheap: TensorFlow is imported only by :mod:`p2pfl_tf.learner`,
:mod:`p2pfl_tf.models` and the helpers they use, so ``p2pfl plugins list`` never loads it.
"""

from p2pfl_tf.__about__ import __version__

__all__ = ["__version__"]
