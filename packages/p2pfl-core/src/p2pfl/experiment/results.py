"""Writing an experiment's output directory: config, per-round metrics, summary, plots."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

PLOTTED = ("accuracy", "loss")


def metric_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per node and round."""
    return [{"node": node, **entry} for node, history in summary["history"].items() for entry in history]


def public_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The summary without the per-round history (that goes to metrics.jsonl/csv)."""
    return {k: v for k, v in summary.items() if k != "history"}


def write_results(out_dir: str | Path, cfg: Mapping[str, Any], summary: Mapping[str, Any], plots: bool = True) -> Path:
    """Write ``config.yaml``, ``metrics.jsonl``, ``metrics.csv``, ``summary.json`` and PNG plots."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(_plain(cfg), sort_keys=False))
    rows = metric_rows(summary)
    with (out / "metrics.jsonl").open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    columns = sorted({k for row in rows for k in row}, key=lambda k: (k not in ("node", "round"), k))
    with (out / "metrics.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    (out / "summary.json").write_text(json.dumps(public_summary(summary), indent=2))
    if plots and rows:
        for metric in PLOTTED:
            plot_metric(rows, metric, out / f"{metric}.png", title=f"{summary['name']}: test {metric}")
    return out


def plot_metric(rows: list[dict[str, Any]], metric: str, path: Path, title: str) -> None:
    """Mean over nodes per round, with the min–max spread as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_round: dict[int, list[float]] = {}
    for row in rows:
        if row.get(metric) is not None:
            by_round.setdefault(row["round"], []).append(float(row[metric]))
    if not by_round:
        return
    rounds = sorted(by_round)
    means = [sum(by_round[r]) / len(by_round[r]) for r in rounds]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.fill_between(
        rounds,
        [min(by_round[r]) for r in rounds],
        [max(by_round[r]) for r in rounds],
        alpha=0.25,
        label="min–max over nodes",
    )
    ax.plot(rounds, means, marker="o", label="mean over nodes")
    ax.set_xlabel("round")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plain(value: Any) -> Any:
    """YAML-safe copy (objects such as a MemoryNetwork become their repr)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)
