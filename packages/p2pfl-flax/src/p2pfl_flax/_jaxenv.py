"""Import JAX quietly: CPU by default, and no platform-probing warnings on the console.

Imported (for its effect) by every module of this package that imports JAX, *before* JAX.
``JAX_PLATFORMS`` is only set when the user left it unset: export ``JAX_PLATFORMS=cuda``
(or ``""`` for JAX's own probing) to train on an accelerator.
"""

from __future__ import annotations

import logging
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Messages JAX logs while probing for accelerators ("No GPU/TPU found, falling back to
# CPU", "An NVIDIA GPU may be present on this machine, but a CUDA-enabled jaxlib is not
# installed", "Unable to initialize backend ..."): noise for a CPU federated-learning run.
_NOISE = ("no gpu/tpu found", "falling back to cpu", "cuda-enabled jaxlib", "unable to initialize backend")


class _PlatformNoiseFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage().lower()
        return not any(fragment in message for fragment in _NOISE)


def _install_filter() -> None:
    for name in ("jax._src.xla_bridge", "jax._src.compiler", "jax"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _PlatformNoiseFilter) for f in logger.filters):
            logger.addFilter(_PlatformNoiseFilter())


_install_filter()
