"""Codecs chained in a CodecPipeline and carried by the wire encoding; byte accounting."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from p2pfl.compression import CodecError, CodecPipeline, EncodedTensors
from p2pfl.parameters import parameters_equal
from p2pfl.wire import Message, ModelPayload, decode_message, encode_message
from p2pfl_compression.dp import GaussianDP
from p2pfl_compression.lossless import Lzma, Zlib
from p2pfl_compression.lowrank import LowRank
from p2pfl_compression.quantize import Quantize
from p2pfl_compression.sign import Sign
from p2pfl_compression.sparse import RandomK, TopK


def model(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "fc1.weight": rng.normal(0, 0.05, (784, 128)).astype(np.float32),
        "fc1.bias": np.zeros(128, np.float32),
        "conv.weight": rng.normal(0, 0.1, (16, 8, 3, 3)).astype(np.float16),
        "head.weight": rng.normal(0, 0.1, (128, 10)).astype(ml_dtypes.bfloat16),
        "head.bias": rng.normal(0, 0.1, (10,)).astype(np.float64),
        "bn.num_batches_tracked": np.array(100, np.int64),
        "temperature": np.array(1.0, np.float32),
        "unused": np.zeros((0, 3), np.float32),
    }


def over_the_wire(encoded: EncodedTensors) -> EncodedTensors:
    msg = Message(kind="model", origin="node-0", round=3, model=ModelPayload(encoded, 32, ("node-0",)))
    received = decode_message(encode_message(msg))
    assert received.model is not None
    return received.model.tensors


def trained(base: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        k: (v + rng.normal(0, 0.01, v.shape)).astype(v.dtype) if v.dtype.kind != "i" else v + 1 for k, v in base.items()
    }


CHAINS = {
    "topk+quantize+zlib": lambda: [TopK(k=0.01), Quantize(bits=8), Zlib(level=6)],
    "randomk+quantize+lzma": lambda: [RandomK(k=0.05, seed=1), Quantize(dtype="uint8", scheme="asymmetric"), Lzma()],
    "sign+zlib": lambda: [Sign(), Zlib(concat=True)],
    "lowrank+quantize16": lambda: [LowRank(rank=4), Quantize(dtype="float16")],
    "dp+topk+quantize": lambda: [GaussianDP(noise_multiplier=0.1, seed=0), TopK(k=0.1), Quantize(bits=16)],
}


@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_lossless_tail_changes_nothing_and_wire_changes_nothing(chain):
    """The same chain without its lossless codecs decodes to the same bits, directly and after the wire."""
    base = model()
    params = trained(base)
    full = CodecPipeline(CHAINS[chain]())
    lossy_only = CodecPipeline([c for c in CHAINS[chain]() if not c.lossless])
    encoded = full.encode(params, base)
    reference = lossy_only.decode(lossy_only.encode(params, base), base)
    receiver = CodecPipeline(decoders={c.name: c for c in CHAINS[chain]()})
    for payload in (encoded, over_the_wire(encoded)):
        decoded = receiver.decode(payload, base)
        assert parameters_equal(decoded, reference)
    assert decoded["bn.num_batches_tracked"] == 101  # integers travel untouched


@pytest.mark.parametrize("codecs", [[Zlib()], [Lzma(concat=True)], [Zlib(level=9), Lzma(level=1)]])
def test_lossless_codecs_roundtrip_exactly_through_the_wire(codecs):
    params = model()
    pipeline = CodecPipeline(codecs)
    decoded = pipeline.decode(over_the_wire(pipeline.encode(params)))
    assert parameters_equal(decoded, params)


def test_topk_quantize_zlib_is_over_20x_smaller():
    base = model()
    params = trained(base)
    plain = CodecPipeline().encode(params, base)
    compressed = CodecPipeline([TopK(k=0.01), Quantize(bits=8), Zlib(level=6)]).encode(params, base)
    assert plain.nbytes / compressed.nbytes >= 20


def test_nbytes_is_what_the_wire_carries():
    base = model()
    encoded = CodecPipeline([TopK(k=0.01), Quantize(bits=8), Zlib()]).encode(trained(base), base)
    msg = Message(kind="model", origin="n", model=ModelPayload(encoded, 1, ("n",)))
    size = len(encode_message(msg))
    # every tensor byte is counted; what the wire adds is names, shapes and the JSON metadata
    overhead = sum(len(n) + 32 for n in encoded.arrays) + sum(len(str(m)) + 32 for _, m in encoded.codecs)
    assert encoded.nbytes <= size <= encoded.nbytes + overhead


def test_unknown_codec_and_missing_codec_are_rejected():
    base = model()
    encoded = CodecPipeline([TopK(k=0.01)]).encode(trained(base), base)
    with pytest.raises(CodecError, match="topk"):
        CodecPipeline([Zlib()]).decode(encoded, base)
    renamed = EncodedTensors(encoded.arrays, [encoded.codecs[0], ("nonsense", {})], encoded.delta)
    with pytest.raises(CodecError, match="nonsense"):
        CodecPipeline([TopK()]).decode(renamed, base)


def test_delta_codecs_are_skipped_without_a_base():
    params = model()
    pipeline = CodecPipeline([TopK(k=0.01), Quantize(bits=8)])
    encoded = pipeline.encode(params)
    assert [name for name, _ in encoded.codecs] == ["pipeline", "quantize"]
    assert not encoded.delta


def test_payload_names_clashing_with_parts_are_refused():
    arrays = {"w": np.ones(100, np.float32), "w.indices": np.arange(3, dtype=np.int64)}
    with pytest.raises(CodecError, match="clashes"):
        TopK(k=1).encode(arrays)
