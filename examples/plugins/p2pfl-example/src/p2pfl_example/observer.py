"""A lifecycle observer: one CSV row per node and round (hook ``p2pfl_round_finished``).

The file is ``$P2PFL_EXAMPLE_CSV``, or ``p2pfl-rounds.csv`` in the working directory when
the variable is unset; set it to the empty string to write nothing (e.g. in a test suite
where the plugin is installed but not under test). It is read at every write, so a script
or a test can point it elsewhere at any time. Rows are appended (remove the file between
experiments, or use one file per run); the header is written when the file is new or
empty. Columns a round did not report stay empty.
"""

from __future__ import annotations

import csv
import io
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CSV_ENV = "P2PFL_EXAMPLE_CSV"
DEFAULT_PATH = "p2pfl-rounds.csv"
COLUMNS = ("node", "round", "accuracy", "loss", "train_loss", "contributors", "bytes_sent")

# Nodes of one experiment share an event loop, but a process may host several runtimes.
_lock = threading.Lock()


def csv_path() -> Path | None:
    """Where rows go now (``None``: nowhere)."""
    value = os.environ.get(CSV_ENV)
    if value is None:
        return Path(DEFAULT_PATH)
    return Path(value) if value.strip() else None


def write_round(node_id: str, round: int, metrics: Mapping[str, Any]) -> None:
    """Append the row of ``node_id``'s ``round`` (one short write, so appends do not interleave)."""
    path = csv_path()
    if path is None:
        return
    line = io.StringIO()
    csv.writer(line).writerow([node_id, round, *(_cell(metrics.get(column)) for column in COLUMNS[2:])])
    with _lock, path.open("a", newline="") as fh:
        if fh.tell() == 0:
            header = io.StringIO()
            csv.writer(header).writerow(COLUMNS)
            fh.write(header.getvalue())
        fh.write(line.getvalue())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # round-trips exactly through float()
    return str(value)
