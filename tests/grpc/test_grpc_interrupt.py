"""Ctrl-C during a run with one OS process per node: learning stops everywhere, what was
measured is kept, the exit code is 130 and no node process is left behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.framework


def test_interrupt_keeps_results(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "p2pfl", "run", "mnist", "--output", str(out),
         "--set", "network.protocol=grpc", "--set", "network.protocol_options.insecure=true",
         "--set", "network.processes=true", "--set", "network.nodes=3", "--set", "training.rounds=500",
         "--set", "model.params.hidden=[16]"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the progress display prints a line when every node finished a round
            if line.startswith("round   2/500"):
                break
        else:
            pytest.fail(f"the run ended before round 2 (exit {proc.wait(60)})")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(300) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True
    assert 2 <= summary["rounds_completed"] < 500
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert len(rows) >= 3 * 2
