"""p2pfl-compression: update codecs for p2pfl (plugin kind ``compressors``).

Importing this package is cheap: the codecs live in submodules and are registered as lazy
``"module:attr"`` targets by :mod:`p2pfl_compression.plugin`.
"""

from p2pfl_compression.__about__ import __version__

__all__ = ["__version__"]
