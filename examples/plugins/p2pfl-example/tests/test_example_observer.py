"""The CSV round logger: one row per node and round, matching what the nodes recorded."""

from __future__ import annotations

import csv

from p2pfl_example import plugin
from p2pfl_example.observer import COLUMNS, write_round


def read_rows(path):
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_rows_match_the_nodes_history(p2pfl_register_plugin, memory_cluster, tmp_path, monkeypatch) -> None:
    path = tmp_path / "rounds.csv"
    monkeypatch.setenv("P2PFL_EXAMPLE_CSV", str(path))
    p2pfl_register_plugin(plugin, name="p2pfl-example")
    cluster = memory_cluster(3)
    assert cluster.learn(rounds=2)
    rows = read_rows(path)
    assert len(rows) == 3 * 2 and tuple(rows[0]) == COLUMNS
    by_key = {(row["node"], int(row["round"])): row for row in rows}
    for node in cluster.nodes:
        for entry in node.history:  # what the node recorded itself, through another path
            row = by_key[node.id, entry["round"]]
            assert float(row["accuracy"]) == entry["accuracy"] and float(row["loss"]) == entry["loss"]
            assert int(row["bytes_sent"]) == entry["bytes_sent"]


def test_default_file_in_the_working_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("P2PFL_EXAMPLE_CSV", raising=False)
    monkeypatch.chdir(tmp_path)
    write_round("a", 1, {"accuracy": 0.5})
    write_round("b", 1, {"loss": 0.25, "other": 1})
    assert read_rows(tmp_path / "p2pfl-rounds.csv") == [
        {
            "node": "a",
            "round": "1",
            "accuracy": "0.5",
            "loss": "",
            "train_loss": "",
            "contributors": "",
            "bytes_sent": "",
        },
        {
            "node": "b",
            "round": "1",
            "accuracy": "",
            "loss": "0.25",
            "train_loss": "",
            "contributors": "",
            "bytes_sent": "",
        },
    ]


def test_empty_variable_writes_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("P2PFL_EXAMPLE_CSV", "")
    monkeypatch.chdir(tmp_path)
    write_round("a", 1, {"accuracy": 0.5})
    assert not any(tmp_path.iterdir())
