"""p2pfl-torch: the PyTorch / Lightning learner of p2pfl.

Importing this package is cheap (it does not import torch): the plugin system imports it
when listing plugins. The learner lives in :mod:`p2pfl_torch.learner`, the example models
in :mod:`p2pfl_torch.models`.
"""

from p2pfl_torch.__about__ import __version__

__all__ = ["__version__"]
