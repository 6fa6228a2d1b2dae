"""Version of p2pfl-core; every first-party distribution shares it (lockstep)."""

__version__ = "0.5.0"
