"""Built-in datasets (plugin kind ``datasets``): ``mnist``, local files and Hub names.

Every loader returns a :class:`~p2pfl.data.spec.DatasetSpec` with Hugging Face ``datasets``
splits. The label column always ends up as a ``ClassLabel`` (integer ids), image columns
as fixed-length float32 lists in [0, 1], and a source without a test split is split with a
seeded shuffle. ``datasets`` and ``pyarrow`` are imported inside the functions, so that
importing this module (and listing plugins) stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from p2pfl.data.spec import DatasetSpec, column

if TYPE_CHECKING:
    import datasets

MNIST_RESOURCE = "mnist/mnist_5k.parquet"
MNIST_SIDE = 28

#: file suffix -> ``datasets`` packaged builder
FILE_FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".arrow": "arrow",
}


# --------------------------------------------------------------------------- public loaders


def mnist(test_size: float | int = 0.2, seed: int = 0, stratify: bool = False) -> DatasetSpec:
    """The 5,000 MNIST digits shipped with p2pfl-core (see ``p2pfl/data/mnist/README.md``).

    Features ``"image"``: 784 float32 pixels in [0, 1] (``input_shape`` ``(28, 28)``);
    label ``"label"``: the digit. Split into train/test with a seeded shuffle.
    """
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    with resources.as_file(resources.files("p2pfl.data").joinpath(MNIST_RESOURCE)) as path:
        table = pq.read_table(path)
    pixels = np.asarray(table.column("image").combine_chunks().values, dtype=np.float32) / 255.0
    size = MNIST_SIDE * MNIST_SIDE
    features = datasets.Features(
        {
            "image": datasets.Sequence(datasets.Value("float32"), length=size),
            "label": datasets.ClassLabel(num_classes=10),
        }
    )
    columns = {"image": pa.FixedSizeListArray.from_arrays(pa.array(pixels), size), "label": table.column("label")}
    full = datasets.Dataset.from_dict(columns, features=features)
    return prepare(
        datasets.DatasetDict(train=full),
        name="mnist",
        features="image",
        label="label",
        input_shape=(MNIST_SIDE, MNIST_SIDE),
        test_size=test_size,
        seed=seed,
        stratify=stratify,
    )


def from_files(
    path: str | Mapping[str, str],
    format: str | None = None,
    cache_dir: str | None = None,
    options: Mapping[str, Any] | None = None,
    **params: Any,
) -> DatasetSpec:
    """A dataset from local files: parquet, CSV, JSON/JSON lines, arrow, or an image folder.

    Args:
        path: a file, a folder, or a mapping ``split -> file`` (e.g. ``{train: a.csv, test: b.csv}``).
            A folder is read as an image folder (``<label>/<image>`` layout, Hugging Face
            ``imagefolder``) unless ``format`` says otherwise, or as a saved dataset when it
            holds one written by ``save_to_disk``.
        format: a ``datasets`` builder (``parquet``, ``csv``, ``json``, ``arrow``,
            ``imagefolder``); by default taken from the file suffix.
        cache_dir: where ``datasets`` keeps its cache (its default otherwise).
        options: extra keyword arguments for ``datasets.load_dataset`` (e.g. ``{delimiter: ";"}``).
        **params: column and split options of :func:`prepare`.
    """
    import datasets

    files = {"train": path} if isinstance(path, str | Path) else dict(path)
    for file in files.values():
        if not Path(file).exists():
            raise FileNotFoundError(f"dataset file or folder not found: {file}")
    first = Path(next(iter(files.values())))
    if first.is_dir() and format is None and _is_saved_dataset(first):
        return prepare(_as_dict(datasets.load_from_disk(str(first))), name=str(first), **params)
    builder = format or _guess_format(first)
    where = {"data_dir": str(first)} if first.is_dir() else {"data_files": {k: str(v) for k, v in files.items()}}
    source = datasets.load_dataset(builder, **where, cache_dir=cache_dir, **dict(options or {}))
    return prepare(_as_dict(source), name=str(first), **params)


def from_hub(
    path: str,
    config: str | None = None,
    revision: str | None = None,
    cache_dir: str | None = None,
    options: Mapping[str, Any] | None = None,
    **params: Any,
) -> DatasetSpec:
    """A dataset from the Hugging Face Hub by name (needs a network the first time).

    Args:
        path: the Hub name, e.g. ``"ylecun/mnist"``.
        config: the dataset's configuration name, if it has several.
        revision: a branch, tag or commit of the dataset repository.
        cache_dir, options: as for :func:`from_files`.
        **params: column and split options of :func:`prepare`.
    """
    import datasets

    source = datasets.load_dataset(path, config, revision=revision, cache_dir=cache_dir, **dict(options or {}))
    return prepare(_as_dict(source), name=path, **params)


# --------------------------------------------------------------------------- shared preparation


def prepare(
    source: datasets.DatasetDict,
    name: str = "",
    features: str | Sequence[str] | None = None,
    label: str = "label",
    test_size: float | int = 0.2,
    seed: int = 0,
    stratify: bool = False,
    train_split: str = "train",
    test_split: str = "test",
    input_shape: Sequence[int] | None = None,
    image_size: int | Sequence[int] | None = None,
    image_mode: str | None = None,
) -> DatasetSpec:
    """Turn loaded splits into a :class:`DatasetSpec`.

    Args:
        source: the loaded splits.
        features: input column(s); by default every column but the label.
        label: the class column (integers, or strings mapped to ids in sorted order).
        test_size: fraction (or count) held out for testing when ``source`` has no ``test_split``.
        seed: seed of that train/test split.
        stratify: keep the label proportions equal in both parts of that split.
        train_split, test_split: the split names to use.
        input_shape: the shape of one example (inferred when omitted).
        image_size: resize images to this ``side`` or ``(height, width)``.
        image_mode: convert images to this PIL mode (``"L"`` grey, ``"RGB"``); by default
            ``L`` and ``RGB`` images are kept and other modes become ``RGB``.
    """
    splits = _pick_splits(source, train_split, test_split)
    columns = _feature_columns(splits[0], features, label)
    splits = [ds.select_columns([*columns, label]) for ds in splits]
    splits, num_classes = _encode_labels(splits, label)
    splits, image_shape = _convert_images(splits, columns, image_size, image_mode)
    if len(splits) == 1:
        split = splits[0].train_test_split(
            test_size=test_size, seed=seed, stratify_by_column=label if stratify else None
        )
        splits = [split["train"], split["test"]]
    shape = tuple(input_shape) if input_shape is not None else image_shape or _infer_shape(splits[0], columns)
    cols: str | list[str] = columns[0] if len(columns) == 1 else columns
    return DatasetSpec(splits[0], splits[1], cols, label, num_classes, shape, name)


def _as_dict(source: Any) -> datasets.DatasetDict:
    import datasets

    if isinstance(source, datasets.Dataset):
        return datasets.DatasetDict(train=source)
    if not isinstance(source, datasets.DatasetDict):
        raise TypeError(f"expected a datasets.Dataset or DatasetDict, got {type(source).__name__}")
    return source


def _is_saved_dataset(folder: Path) -> bool:
    return (folder / "dataset_dict.json").exists() or (folder / "state.json").exists()


def _guess_format(path: Path) -> str:
    if path.is_dir():
        return "imagefolder"
    suffixes = [s for s in path.suffixes if s not in (".gz", ".bz2", ".xz", ".zst")]
    builder = FILE_FORMATS.get(suffixes[-1].lower()) if suffixes else None
    if builder is None:
        raise ValueError(f"cannot tell the format of {path}; pass format: one of {sorted(set(FILE_FORMATS.values()))}")
    return builder


def _pick_splits(source: datasets.DatasetDict, train: str, test: str) -> list[datasets.Dataset]:
    """``[train, test]`` when the source has both, else ``[train]`` (to be split later)."""
    if train not in source:
        raise ValueError(f"dataset has no split {train!r}; splits: {sorted(source)} (set train_split)")
    if len(source[train]) == 0:
        raise ValueError(f"split {train!r} of the dataset is empty")
    return [source[train], source[test]] if test in source else [source[train]]


def _feature_columns(ds: datasets.Dataset, features: str | Sequence[str] | None, label: str) -> list[str]:
    names = list(ds.column_names)
    if label not in names:
        raise ValueError(f"label column {label!r} not found; columns: {names}")
    if features is None:
        columns = [c for c in names if c != label]
    else:
        columns = [features] if isinstance(features, str) else list(features)
    missing = [c for c in columns if c not in names]
    if missing or not columns:
        raise ValueError(f"feature column(s) {missing or columns} not found; columns: {names}")
    return columns


def _encode_labels(splits: list[datasets.Dataset], label: str) -> tuple[list[datasets.Dataset], int]:
    """Cast the label of every split to one shared ``ClassLabel``; return the splits and the class count."""
    import datasets

    kind = splits[0].features[label]
    if isinstance(kind, datasets.ClassLabel):
        return splits, kind.num_classes
    values = np.concatenate([column(ds, label) for ds in splits])
    if values.dtype.kind in "US" or values.dtype == object:
        target = datasets.ClassLabel(names=sorted({str(v) for v in values}))
    elif values.dtype.kind in "iub" or (values.dtype.kind == "f" and np.all(values == np.round(values))):
        if values.min() < 0:
            raise ValueError(f"label column {label!r} has negative class ids (min {values.min()})")
        target = datasets.ClassLabel(num_classes=int(values.max()) + 1)
        splits = [ds.cast_column(label, datasets.Value("int64")) for ds in splits]
    else:
        raise ValueError(f"label column {label!r} must hold class ids or names, not {kind}")
    return [ds.cast_column(label, target) for ds in splits], target.num_classes


def _convert_images(
    splits: list[datasets.Dataset], columns: list[str], size: int | Sequence[int] | None, mode: str | None
) -> tuple[list[datasets.Dataset], tuple[int, ...] | None]:
    """Decode image columns into flat float32 lists in [0, 1]; return the image shape (if any)."""
    import datasets

    images = [c for c in columns if isinstance(splits[0].features[c], datasets.Image)]
    if not images:
        return splits, None
    if len(columns) > 1:
        raise ValueError(f"an image column cannot be combined with other feature columns: {columns}")
    column = images[0]
    shape = _image_array(splits[0][0][column], size, mode).shape
    flat = datasets.Sequence(datasets.Value("float32"), length=int(np.prod(shape)))

    def convert(batch: dict[str, list[Any]]) -> dict[str, list[np.ndarray]]:
        arrays = [_image_array(image, size, mode) for image in batch[column]]
        for array in arrays:
            if array.shape != shape:
                raise ValueError(f"images have different shapes ({array.shape} vs {shape}); set image_size")
        return {column: [a.reshape(-1) for a in arrays]}

    converted = [ds.map(convert, batched=True, features=_with_feature(ds.features, column, flat)) for ds in splits]
    return converted, shape


def _with_feature(features: datasets.Features, column: str, kind: Any) -> datasets.Features:
    updated = features.copy()
    updated[column] = kind
    return updated


def _image_array(image: Any, size: int | Sequence[int] | None, mode: str | None) -> np.ndarray:
    """One PIL image as float32 in [0, 1], shape ``(H, W)`` (grey) or ``(H, W, C)``."""
    target_mode = mode or (image.mode if image.mode in ("L", "RGB") else "RGB")
    if image.mode != target_mode:
        image = image.convert(target_mode)
    if size is not None:
        height, width = (size, size) if isinstance(size, int) else size
        image = image.resize((width, height))  # PIL takes (width, height)
    return np.asarray(image, dtype=np.float32) / 255.0


def _infer_shape(ds: datasets.Dataset, columns: list[str]) -> tuple[int, ...]:
    """One example's shape: a single array column keeps its shape, scalars/several columns are flat."""
    row = ds.with_format("numpy")[0]
    arrays = []
    for name in columns:
        try:
            arrays.append(np.asarray(row[name], dtype=np.float32))
        except (TypeError, ValueError):
            raise ValueError(
                f"feature column {name!r} is not numeric ({ds.features[name]}); choose columns with `features`"
            ) from None
    if len(arrays) == 1 and arrays[0].ndim > 0:
        return arrays[0].shape
    return (sum(a.size for a in arrays),)
