"""p2pfl-grpc: the ``grpc`` transport, TLS / mutual TLS and the ``p2pfl certs`` command.

Importing this package is cheap: grpc and cryptography are imported only by the modules
that need them (``p2pfl_grpc.transport``, ``p2pfl_grpc.certs``).
"""

from p2pfl_grpc.__about__ import __version__

__all__ = ["__version__"]
