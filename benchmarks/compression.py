"""Encode/decode throughput and compression ratio of every codec of p2pfl-compression.

    python benchmarks/compression.py                        # a 10M-parameter float32 model
    python benchmarks/compression.py --size 1000000 --only topk-1%,zlib-6

Prints one JSON object. Each codec runs in a :class:`~p2pfl.compression.CodecPipeline`
exactly as a node sends an update: delta codecs see ``params - base``. Per codec:
``encode_mb_s`` / ``decode_mb_s`` are megabytes of dense float32 parameters per second
(best of ``--repeat``), ``ratio`` is dense bytes over the encoded tensor bytes
(``EncodedTensors.nbytes``), ``wire_ratio`` the same over the whole wire message (names and
JSON metadata included), and ``relative_error`` is ``‖x̂ − x‖ / ‖x‖`` of what the codec saw
(the update for delta codecs, the model otherwise). ``copy_mb_s`` is a numpy copy of the
model in the same run, the yardstick for the throughputs.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from p2pfl.compression import Codec, CodecPipeline
from p2pfl.parameters import Parameters
from p2pfl.wire import Message, ModelPayload, encode_message
from p2pfl_compression.dp import GaussianDP
from p2pfl_compression.lossless import Lzma, Zlib
from p2pfl_compression.lowrank import LowRank
from p2pfl_compression.quantize import Quantize
from p2pfl_compression.sign import Sign
from p2pfl_compression.sparse import RandomK, TopK

CODECS: dict[str, Callable[[], list[Codec]]] = {
    "quantize-int8": lambda: [Quantize(bits=8)],
    "quantize-int8-channel": lambda: [Quantize(bits=8, granularity="channel")],
    "quantize-uint8-asymmetric": lambda: [Quantize(dtype="uint8", scheme="asymmetric")],
    "quantize-int16": lambda: [Quantize(bits=16)],
    "quantize-float16": lambda: [Quantize(dtype="float16")],
    "quantize-bfloat16": lambda: [Quantize(dtype="bfloat16")],
    "topk-1%": lambda: [TopK(k=0.01)],
    "randomk-1%": lambda: [RandomK(k=0.01, seed=0)],
    "sign": lambda: [Sign()],
    "lowrank-rank8": lambda: [LowRank(rank=8)],
    "dp": lambda: [GaussianDP(clip=1.0, noise_multiplier=1.0, seed=0)],
    "zlib-6": lambda: [Zlib(level=6)],
    "zlib-1": lambda: [Zlib(level=1)],
    "lzma-1": lambda: [Lzma(level=1)],
    "topk-1%+quantize-int8+zlib-6": lambda: [TopK(k=0.01), Quantize(bits=8), Zlib(level=6)],
}


def make_model(size: int, seed: int = 0) -> tuple[Parameters, Parameters]:
    """A ``size``-parameter float32 model (conv kernel, matrices, vector) and a trained copy."""
    conv_out = max(1, round(0.1 * size / 576))
    fc1_rows = max(1, round(0.5 * size / 1024))
    fc2_rows = max(1, round(0.3 * size / 512))
    shapes: dict[str, tuple[int, ...]] = {
        "conv.weight": (conv_out, 64, 3, 3),
        "fc1.weight": (fc1_rows, 1024),
        "fc2.weight": (fc2_rows, 512),
    }
    rest = size - sum(int(np.prod(s)) for s in shapes.values())
    if rest <= 0:
        raise SystemExit(f"--size {size} is too small (at least ~1000 parameters)")
    shapes["head.bias"] = (rest,)
    rng = np.random.default_rng(seed)
    base = {n: rng.normal(0, 0.05, s).astype(np.float32) for n, s in shapes.items()}
    params = {n: v + rng.normal(0, 1e-3, v.shape).astype(np.float32) for n, v in base.items()}
    return params, base


def best_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def relative_error(decoded: Parameters, params: Parameters, origin: Parameters) -> float:
    err = sum(float(np.sum((decoded[n].astype(np.float64) - params[n]) ** 2)) for n in params)
    ref = sum(float(np.sum((params[n].astype(np.float64) - origin[n]) ** 2)) for n in params)
    return float(np.sqrt(err / ref)) if ref else 0.0


def measure(name: str, params: Parameters, base: Parameters, repeat: int) -> dict[str, Any]:
    dense = sum(a.nbytes for a in params.values())
    codecs = CODECS[name]()
    delta = any(c.delta for c in codecs)
    # a fresh pipeline per repetition: error feedback must not make later runs differ
    enc_s, encoded = best_time(lambda: CodecPipeline(CODECS[name]()).encode(params, base), repeat)
    receiver = CodecPipeline(CODECS[name]())
    dec_s, decoded = best_time(lambda: receiver.decode(encoded, base), repeat)
    wire = len(encode_message(Message(kind="model", origin="n", model=ModelPayload(encoded, 1, ("n",)))))
    origin = base if delta else {n: np.zeros_like(v) for n, v in params.items()}
    return {
        "encode_mb_s": round(dense / enc_s / 1e6, 1),
        "decode_mb_s": round(dense / dec_s / 1e6, 1),
        "ratio": round(dense / encoded.nbytes, 2),
        "wire_ratio": round(dense / wire, 2),
        "relative_error": round(relative_error(decoded, params, origin), 6),
        "encoded_bytes": encoded.nbytes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000_000, help="float32 parameters (default 10M)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement; the best counts")
    parser.add_argument("--only", default="", help="comma-separated codec names: " + ", ".join(CODECS))
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(CODECS)
    unknown = [n for n in names if n not in CODECS]
    if unknown:
        parser.error(f"unknown codec(s) {', '.join(unknown)}; available: {', '.join(CODECS)}")
    params, base = make_model(args.size)
    dense = sum(a.nbytes for a in params.values())
    copy_s, _ = best_time(lambda: {n: v.copy() for n, v in params.items()}, args.repeat)
    report = {
        "benchmark": "compression",
        "parameters": args.size,
        "dense_bytes": dense,
        "shapes": {n: list(v.shape) for n, v in params.items()},
        "copy_mb_s": round(dense / copy_s / 1e6, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "codecs": {name: measure(name, params, base, args.repeat) for name in names},
    }
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
