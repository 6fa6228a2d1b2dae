"""The live progress display of ``p2pfl run`` (a lifecycle-hook observer) and the final table."""

from __future__ import annotations

import statistics
import sys
import threading
import time
from typing import Any, TextIO

import click

from p2pfl.hookspecs import hookimpl


class ProgressDisplay:
    """Shows the round, the phase (trained / aggregated counts) and accuracy as nodes report them."""

    def __init__(self, rounds: int, nodes: int, stream: TextIO | None = None) -> None:
        self.rounds, self.nodes = rounds, nodes
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.lock = threading.Lock()
        self.trained: dict[int, int] = {}
        self.finished: dict[int, list[dict[str, Any]]] = {}
        self.started = time.perf_counter()

    def _status(self, r: int) -> None:
        if self.live:
            line = (
                f"round {r}/{self.rounds}: {self.trained.get(r, 0)} trained, "
                f"{len(self.finished.get(r, []))}/{self.nodes} aggregated"
            )
            self.stream.write("\r\033[K" + line)
            self.stream.flush()

    @hookimpl
    def p2pfl_local_training_done(self, node_id: str, round: int, metrics: dict[str, float]) -> None:
        with self.lock:
            self.trained[round] = self.trained.get(round, 0) + 1
            self._status(round)

    @hookimpl
    def p2pfl_round_finished(self, node_id: str, round: int, metrics: dict[str, float]) -> None:
        with self.lock:
            done = self.finished.setdefault(round, [])
            done.append(metrics)
            self._status(round)
            if len(done) == self.nodes:
                self._round_line(round, done)

    def _round_line(self, r: int, done: list[dict[str, Any]]) -> None:
        acc = [m["accuracy"] for m in done if "accuracy" in m]
        loss = [m["loss"] for m in done if "loss" in m]
        sent = sum(m.get("bytes_sent", 0) for m in done)
        text = f"round {r:>3}/{self.rounds}"
        if acc:
            text += f"  accuracy {statistics.fmean(acc):.4f} (min {min(acc):.4f})"
        if loss:
            text += f"  loss {statistics.fmean(loss):.4f}"
        text += f"  sent {sent / 1e6:8.2f} MB  {time.perf_counter() - self.started:7.1f}s"
        self.stream.write(("\r\033[K" if self.live else "") + text + "\n")
        self.stream.flush()


def print_node_table(summary: dict[str, Any]) -> None:
    """The final per-node table, then the headline figures."""
    err = sys.stderr
    header = f"{'node':<12}{'status':<10}{'rounds':>7}{'accuracy':>10}{'loss':>9}{'sent MB':>10}  model"
    click.echo(header, file=err)
    for n in summary["per_node"]:
        acc = f"{n['accuracy']:.4f}" if n["accuracy"] is not None else "-"
        loss = f"{n['loss']:.4f}" if n["loss"] is not None else "-"
        click.echo(
            f"{n['node']:<12}{n['status']:<10}{n['rounds_completed']:>7}{acc:>10}{loss:>9}"
            f"{n['bytes_sent'] / 1e6:>10.2f}  {n['model_digest']}",
            file=err,
        )
    if summary["final_accuracy"] is not None:
        agree = "all nodes hold the same model" if summary["models_agree"] else "models DIFFER between nodes"
        click.echo(
            f"mean accuracy {summary['final_accuracy']:.4f} (min {summary['final_accuracy_min']:.4f}), "
            f"{summary['wall_seconds']:.1f}s, {agree}",
            file=err,
        )
    if summary.get("output_dir"):
        click.echo(f"results, metrics and plots in {summary['output_dir']}/", file=err)
