"""Version of p2pfl-grpc (lockstep with p2pfl-core)."""

__version__ = "0.5.0"
