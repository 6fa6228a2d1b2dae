"""Hook implementations of p2pfl-compression: registers the codecs (kind ``compressors``).

Targets are lazy ``"module:attr"`` strings: listing plugins imports nothing from the codecs.
"""

from __future__ import annotations

from typing import Any

from p2pfl import hookimpl

CODECS: dict[str, tuple[str, str]] = {
    "quantize": ("p2pfl_compression.quantize:Quantize", "float16/bfloat16 casts, int8/uint8/int16 quantization"),
    "topk": ("p2pfl_compression.sparse:TopK", "largest-magnitude entries of the update, with error feedback"),
    "randomk": ("p2pfl_compression.sparse:RandomK", "seeded random entries of the update, optional error feedback"),
    "sign": ("p2pfl_compression.sign:Sign", "1-bit signs and a per-tensor scale, with error feedback"),
    "lowrank": ("p2pfl_compression.lowrank:LowRank", "truncated SVD of the update by rank or energy"),
    "dp": ("p2pfl_compression.dp:GaussianDP", "clip the update's L2 norm, add Gaussian noise, account (eps, delta)"),
    "zlib": ("p2pfl_compression.lossless:Zlib", "lossless zlib compression, bounded decompression"),
    "lzma": ("p2pfl_compression.lossless:Lzma", "lossless LZMA compression, bounded decompression"),
}


@hookimpl
def p2pfl_register_compressors(register: Any) -> None:
    for name, (target, description) in CODECS.items():
        register(name, target, description=description)
