"""Process-wide torch settings, applied once when the first :class:`TorchLearner` is built.

Two things in torch and Lightning are per process, not per node, so they cannot be learner
options:

* **Thread budget.** ``torch.set_num_threads`` sizes the intra-op pool of the whole process
  (new threads inherit it). p2pfl already trains several nodes at once from its executor, so
  intra-op threads on top of that oversubscribe the cores: with 4 workers and torch's
  default of one thread per core, a 2-core machine runs 8 busy threads. The budget is read
  from ``P2PFL_TORCH_THREADS`` (default ``1``); ``0`` leaves torch's own setting alone.
* **Console noise.** Lightning's informational banners and a few of its warnings are
  meaningless here (no Trainer, no progress bar, no distributed run) and would be printed
  once per node. They are silenced by narrow filters installed once, never per fit
  (``warnings.catch_warnings`` is not thread-safe).
"""

from __future__ import annotations

import logging
import os
import threading
import warnings

THREADS_ENV = "P2PFL_TORCH_THREADS"
DEFAULT_THREADS = 1

_lock = threading.Lock()
_configured = False

#: Lightning warnings that say nothing useful when many nodes share one process.
_NOISY_WARNINGS = (
    r".*does not have many workers.*",
    r".*The number of training batches .* is smaller than the logging interval.*",
    r".*srun.*command is available on your system.*",
    r".*You are trying to `self.log\(\)`.*",
    r".*Consider setting `persistent_workers=True`.*",
)


def thread_budget() -> int | None:
    """Intra-op threads per process from ``P2PFL_TORCH_THREADS``; ``None`` means "leave torch alone"."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return DEFAULT_THREADS
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{THREADS_ENV} must be a non-negative integer, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{THREADS_ENV} must be a non-negative integer, got {raw!r}")
    return value or None


def configure_process() -> None:
    """Apply the thread budget and the console filters, once per process (thread-safe)."""
    global _configured
    with _lock:
        if _configured:
            return
        budget = thread_budget()
        if budget is not None:
            import torch

            torch.set_num_threads(budget)
        _quiet_lightning()
        _configured = True


def _quiet_lightning() -> None:
    # INFO banners ("GPU available: ...", precision notes) go through these loggers.
    for name in ("lightning.fabric", "lightning.pytorch", "lightning_fabric", "pytorch_lightning"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)
    for message in _NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
