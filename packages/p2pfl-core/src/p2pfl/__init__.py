"""p2pfl: decentralized federated learning over peer-to-peer networks.

Importing this package is cheap on purpose (the CLI must start fast): it exposes the
version and the pluggy markers plugins need; everything else lives in submodules.
"""

from p2pfl.__about__ import __version__
from p2pfl.hookspecs import hookimpl, hookspec

__all__ = ["__version__", "hookimpl", "hookspec"]
