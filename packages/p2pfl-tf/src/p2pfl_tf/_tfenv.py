"""Import TensorFlow and Keras 3 quietly, on Keras' TensorFlow backend.

Every module of this package that needs TensorFlow imports ``tf`` and ``keras`` from here,
so the environment is prepared before either is first imported:

* ``KERAS_BACKEND`` is set to ``tensorflow`` only when the user left it unset;
* ``TF_CPP_MIN_LOG_LEVEL`` is set to ``2`` (TensorFlow's C++ errors only) only when unset;
* TensorFlow >= 2.17 logs a few lines through absl *before* its log level applies (e.g.
  "oneDNN custom operations are on", "All log messages before absl::InitializeLog() ...").
  While ``import tensorflow`` runs, the process' native stderr (fd 2) is captured; C++ log
  lines below ``TF_CPP_MIN_LOG_LEVEL`` are dropped (logged at DEBUG on ``p2pfl_tf``) and
  everything else (Python warnings, other threads' output) is written back to stderr
  unchanged once the import is done. Nothing is captured when TensorFlow was already
  imported, and Python's ``logging`` configuration is never touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger("p2pfl_tf")

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: "I0000 00:00:1700000000.123456  4997 port.cc:153] ..." (absl) and
#: "2024-01-01 12:00:00.123456: I tensorflow/core/..." (older TensorFlow logging).
_NATIVE_LOG_LINE = re.compile(
    r"^(?:(?P<absl>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+\s+\S+:\d+\]"
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: (?P<tf>[IWEF]) )"
)
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_LEVELS = "IWEF"


def _min_level() -> int:
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def split_noise(text: str, min_level: int) -> tuple[str, str]:
    """``(kept, dropped)``: native log lines below ``min_level`` (0=I, 1=W, 2=E, 3=F) are dropped."""
    kept, dropped = [], []
    for line in text.splitlines(keepends=True):
        match = _NATIVE_LOG_LINE.match(line)
        level = (match.group("absl") or match.group("tf")) if match else None
        noise = line.rstrip("\r\n") == _ABSL_PREAMBLE and min_level > 0
        if noise or (level is not None and _LEVELS.index(level) < min_level):
            dropped.append(line)
        else:
            kept.append(line)
    return "".join(kept), "".join(dropped)


@contextlib.contextmanager
def _filtered_native_stderr() -> Iterator[None]:
    """Capture fd 2 while the body runs, then write back what is not TensorFlow start-up noise."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, AttributeError, ValueError):  # no real fd 2 (embedded interpreters): import as is
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept, dropped = split_noise(capture.read().decode(errors="replace"), _min_level())
            if dropped:
                logger.debug("TensorFlow start-up output (hidden by TF_CPP_MIN_LOG_LEVEL):\n%s", dropped.rstrip())
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def _import() -> tuple[Any, Any]:
    if "tensorflow" not in sys.modules:
        with _filtered_native_stderr():
            import tensorflow
    import keras
    import tensorflow

    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ImportError(
            f"p2pfl-tf needs Keras' TensorFlow backend, but Keras was loaded with the {backend!r} backend "
            f"(KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r}); set KERAS_BACKEND=tensorflow or leave it unset"
        )
    if int(keras.__version__.split(".")[0]) < 3:
        raise ImportError(f"p2pfl-tf needs Keras 3, found keras {keras.__version__}")
    return tensorflow, keras


tf, keras = _import()

__all__ = ["keras", "split_noise", "tf"]
