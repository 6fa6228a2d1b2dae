"""``CodecConformance``: the checks every codec (plugin kind ``compressors``) must pass.

Subclass it in a test module under a name starting with ``Test`` and implement
:meth:`CodecConformance.make_codec`::

    from p2pfl.testing import CodecConformance

    class TestMyCodec(CodecConformance):
        def make_codec(self):
            return MyCodec(level=3)

        max_relative_error = 0.01  # lossy codecs: the bound they promise (None: not checked)

The sample model covers what real models carry (float32 / float64 / float16 / bfloat16,
matrices, convolution kernels, 0-d and empty tensors, constant tensors, integer and bool
buffers). Codecs are driven directly and through :class:`~p2pfl.compression.CodecPipeline`
and the wire encoding; a fresh codec decodes every payload (decoding uses the arrays and
metadata alone). Corrupt metadata and arrays must raise
:class:`~p2pfl.compression.CodecError`, never another exception and never a large
allocation.
"""

from __future__ import annotations

import copy
import json
import math
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import ml_dtypes
import numpy as np
import pytest

from p2pfl.compression import Codec, CodecError, CodecPipeline, EncodedTensors
from p2pfl.parameters import Parameters, copy_parameters, is_float, parameters_equal

#: rule id -> what the codec must do.
CODEC_RULES: dict[str, str] = {
    "codec.interface": "a codec must subclass p2pfl.compression.Codec with a non-empty name and bool delta/lossless",
    "codec.roundtrip": "decode(encode(x)) must give back every name, in order, with its shape and dtype",
    "codec.lossless": "a lossless codec must round-trip every tensor bit for bit",
    "codec.error-bound": "a lossy codec must stay within its stated relative error",
    "codec.finite": "decoding finite values must give finite values",
    "codec.passthrough": "arrays a codec does not code (integers from earlier codecs) must come back unchanged",
    "codec.json-meta": "metadata must be a JSON object that survives json.dumps/json.loads unchanged",
    "codec.wire": "a payload must survive the wire encoding (encode_message/decode_message) unchanged",
    "codec.stateless-decode": "a fresh codec instance must decode any payload, from the arrays and metadata alone",
    "codec.no-mutation": "encode must not modify its input arrays",
    "codec.empty": "encoding no arrays must work and decode to no arrays",
    "codec.edge-tensors": "0-d, empty, float16, bfloat16 and float64 tensors must keep their shape and dtype",
    "codec.repeat": "encoding many times in a row (stateful codecs) must keep producing decodable payloads",
    "codec.corrupt-meta": "corrupt metadata must raise CodecError (no other exception, no large allocation)",
    "codec.corrupt-arrays": "missing, truncated or retyped arrays must raise CodecError (no other exception)",
    "codec.metrics": "metrics() must return a dict of str -> float",
    "codec.deterministic": "two codecs built alike must encode the same input identically",
}

#: Values a corrupted metadata leaf is replaced with.
BAD_VALUES: tuple[Any, ...] = (
    None,
    True,
    -1,
    0,
    1,
    3,
    2**31,
    2**40,
    2**62,
    -(2**62),
    1.5,
    float("nan"),
    float("inf"),
    "",
    "x",
    "int64",
    "float64",
    "uint8",
    [],
    [2**20, 2**20],
    [-1],
    [1] * 40,
    {},
    {"v": 1},
)

#: Peak allocation (bytes) allowed while decoding one corrupt sample payload.
MAX_CORRUPT_DECODE_BYTES = 64 * 1024**2


def _fail(rule_id: str, detail: str = "", pytrace: bool = False) -> NoReturn:
    message = f"conformance: {CODEC_RULES[rule_id]} (rule {rule_id})"
    pytest.fail(f"{message}: {detail}" if detail else message, pytrace=pytrace)


def _check(condition: object, rule_id: str, detail: str = "") -> None:
    if not condition:
        _fail(rule_id, detail)


@contextmanager
def _rule(rule_id: str) -> Iterator[None]:
    """Attribute any exception the codec raises inside the block to ``rule_id``."""
    try:
        yield
    except (pytest.fail.Exception, pytest.skip.Exception):
        raise
    except Exception as exc:
        _fail(rule_id, f"raised {type(exc).__name__}: {exc}", pytrace=True)


def sample_parameters(seed: int = 0) -> Parameters:
    """A small model with every kind of tensor a codec meets."""
    rng = np.random.default_rng(seed)
    return {
        "dense.weight": rng.normal(0, 0.1, (48, 32)).astype(np.float32),
        "dense.bias": rng.normal(0, 0.1, (48,)).astype(np.float32),
        "conv.weight": rng.normal(0, 0.1, (8, 3, 3, 3)).astype(np.float32),
        "double": rng.normal(0, 1, (16, 12)).astype(np.float64),
        "half": rng.normal(0, 1, (64, 4)).astype(np.float16),
        "brain": rng.normal(0, 1, (16, 16)).astype(ml_dtypes.bfloat16),
        "scalar": np.array(0.5, np.float32),
        "empty": np.zeros((0, 4), np.float32),
        "constant": np.full((10, 10), 0.25, np.float32),
        "zeros": np.zeros((40,), np.float32),
        "bn.num_batches_tracked": np.array(7, np.int64),
        "mask": np.array([True, False, True]),
    }


class CodecConformance:
    """Conformance suite for :class:`~p2pfl.compression.Codec` implementations (rules ``codec.*``)."""

    #: lossy codecs: largest allowed ‖x̂ − x‖ / ‖x‖ over the float32 and float64 tensors (x is the
    #: update for delta codecs); ``None`` checks no bound (e.g. DP noise).
    max_relative_error: float | None = None
    #: whether two codecs from :meth:`make_codec` encode identically (seeded or deterministic codecs)
    deterministic: bool = True

    # ------------------------------------------------------------------ to implement

    def make_codec(self) -> Codec:
        """A new codec, in its initial state."""
        raise NotImplementedError("subclasses of CodecConformance implement make_codec()")

    # ------------------------------------------------------------------ overridable data

    def make_parameters(self) -> Parameters:
        """The model sent (override to restrict the dtypes your codec supports)."""
        return sample_parameters(0)

    def make_base(self, params: Parameters) -> Parameters:
        """The round's starting model: ``params`` minus a small update (integers equal)."""
        rng = np.random.default_rng(1)
        base: Parameters = {}
        for name, value in params.items():
            if is_float(value):
                step = rng.normal(0, 0.05, value.shape)
                base[name] = (value.astype(np.float64) - step).astype(value.dtype)
            else:
                base[name] = value.copy()
        return base

    # ------------------------------------------------------------------ helpers

    def _codec(self) -> Codec:
        with _rule("codec.interface"):
            codec = self.make_codec()
        _check(isinstance(codec, Codec), "codec.interface", f"got {type(codec).__name__}")
        return codec

    def _coded_input(self) -> dict[str, np.ndarray]:
        """What a codec sees in a chain: floats, plus integer arrays left by earlier codecs."""
        arrays = {n: a for n, a in self.make_parameters().items() if is_float(a)}
        arrays["earlier.indices"] = np.arange(0, 90, 3, dtype=np.int32)
        return arrays

    def _pipeline_roundtrip(self, base: bool) -> tuple[Parameters, Parameters, Parameters | None]:
        params = self.make_parameters()
        base_params = self.make_base(params) if base else None
        sender = CodecPipeline([self._codec()])
        receiver = CodecPipeline(decoders={(c := self._codec()).name: c})
        with _rule("codec.roundtrip"):
            encoded = sender.encode(params, base_params)
            decoded = receiver.decode(encoded, base_params)
        return params, decoded, base_params

    def _check_same_layout(self, params: Parameters, decoded: Parameters, rule_id: str) -> None:
        _check(list(decoded) == list(params), rule_id, f"names {list(decoded)} != {list(params)}")
        for name, value in params.items():
            got = decoded[name]
            _check(
                got.shape == value.shape and got.dtype == value.dtype,
                rule_id,
                f"{name}: {got.dtype.name}{list(got.shape)} != {value.dtype.name}{list(value.shape)}",
            )

    def _decode_must_fail_cleanly(self, codec: Codec, arrays: dict[str, np.ndarray], meta: Any, rule_id: str) -> None:
        tracemalloc.start()
        try:
            codec.decode(arrays, meta)
        except CodecError:
            pass
        except Exception as exc:
            _fail(rule_id, f"meta {_short(meta)}: raised {type(exc).__name__}: {exc}", pytrace=True)
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        _check(peak <= MAX_CORRUPT_DECODE_BYTES, rule_id, f"decoding allocated {peak} bytes for meta {_short(meta)}")

    # ------------------------------------------------------------------ checks

    def test_interface(self) -> None:
        codec = self._codec()
        _check(
            isinstance(codec.name, str) and codec.name and codec.name != "pipeline", "codec.interface", repr(codec.name)
        )
        _check(isinstance(codec.delta, bool) and isinstance(codec.lossless, bool), "codec.interface")

    def test_roundtrip_full_model(self) -> None:
        params, decoded, _ = self._pipeline_roundtrip(base=False)
        self._check_same_layout(params, decoded, "codec.roundtrip")
        self._check_values(params, decoded, None)

    def test_roundtrip_update(self) -> None:
        params, decoded, base = self._pipeline_roundtrip(base=True)
        self._check_same_layout(params, decoded, "codec.roundtrip")
        self._check_values(params, decoded, base)

    def _check_values(self, params: Parameters, decoded: Parameters, base: Parameters | None) -> None:
        for name, value in params.items():
            if not is_float(value):
                _check(parameters_equal({name: value}, {name: decoded[name]}), "codec.passthrough", name)
        codec = self._codec()
        applied = not codec.delta or base is not None
        if codec.lossless or not applied:
            _check(parameters_equal(params, decoded), "codec.lossless", "decoded bytes differ")
            return
        for name, value in params.items():
            if is_float(value) and np.isfinite(value.astype(np.float64)).all():
                _check(np.isfinite(decoded[name].astype(np.float64)).all(), "codec.finite", name)
        if self.max_relative_error is not None:
            # float16/bfloat16 tensors are left out: rebuilding base + update rounds to their coarse grid
            floats = [n for n, v in params.items() if v.dtype in (np.float32, np.float64)]
            # non-delta codecs see the whole model; delta codecs the update
            origin = base if codec.delta and base is not None else {n: np.zeros_like(params[n]) for n in floats}
            ref = {n: origin[n].astype(np.float64) for n in floats}
            err = math.sqrt(sum(float(np.sum((decoded[n].astype(np.float64) - params[n]) ** 2)) for n in floats))
            size = math.sqrt(sum(float(np.sum((params[n].astype(np.float64) - ref[n]) ** 2)) for n in floats))
            _check(err <= self.max_relative_error * size, "codec.error-bound", f"relative error {err / size:.3g}")

    def test_passes_through_other_arrays(self) -> None:
        codec = self._codec()
        arrays = self._coded_input()
        with _rule("codec.passthrough"):
            encoded, meta = codec.encode(arrays)
            decoded = self._codec().decode(dict(encoded), json.loads(json.dumps(meta)))
        _check(set(decoded) == set(arrays), "codec.passthrough", f"names {sorted(decoded)}")
        _check(
            parameters_equal({"i": arrays["earlier.indices"]}, {"i": decoded["earlier.indices"]}),
            "codec.passthrough",
            "integer array changed",
        )

    def test_meta_is_json(self) -> None:
        codec = self._codec()
        with _rule("codec.json-meta"):
            _, meta = codec.encode(self._coded_input())
            text = json.dumps(meta, allow_nan=False)
        _check(isinstance(meta, dict), "codec.json-meta", type(meta).__name__)
        _check(json.loads(text) == meta, "codec.json-meta", "metadata changes through JSON")

    def test_wire_roundtrip(self) -> None:
        from p2pfl.wire import Message, ModelPayload, decode_message, encode_message

        params = self.make_parameters()
        base = self.make_base(params)
        sender = CodecPipeline([self._codec()])
        with _rule("codec.wire"):
            encoded = sender.encode(params, base)
            msg = Message(kind="model", origin="n0", round=1, model=ModelPayload(encoded, 10, ("n0",)))
            received = decode_message(encode_message(msg))
            assert received.model is not None
            direct = CodecPipeline([self._codec()]).decode(encoded, base)
            wired = CodecPipeline([self._codec()]).decode(received.model.tensors, base)
        _check(parameters_equal(direct, wired), "codec.wire", "decoding after the wire differs")
        _check(received.model.tensors.nbytes == encoded.nbytes, "codec.wire", "payload size changed")

    def test_stateless_decode(self) -> None:
        params = self.make_parameters()
        base = self.make_base(params)
        codec = self._codec()
        pipeline = CodecPipeline([codec])
        with _rule("codec.stateless-decode"):
            encoded = pipeline.encode(params, base)
            own = pipeline.decode(encoded, base)
            fresh = CodecPipeline([self._codec()]).decode(encoded, base)
        _check(parameters_equal(own, fresh), "codec.stateless-decode", "a fresh codec decodes differently")

    def test_no_mutation(self) -> None:
        arrays = self._coded_input()
        before = copy_parameters(arrays)
        with _rule("codec.no-mutation"):
            encoded, meta = self._codec().encode(arrays)
            snapshot = copy_parameters(encoded)
            self._codec().decode(encoded, meta)
        _check(parameters_equal(arrays, before), "codec.no-mutation", "encode changed its input")
        _check(parameters_equal(encoded, snapshot), "codec.no-mutation", "decode changed the encoded arrays")

    def test_empty_input(self) -> None:
        with _rule("codec.empty"):
            encoded, meta = self._codec().encode({})
            decoded = self._codec().decode(encoded, json.loads(json.dumps(meta)))
        _check(decoded == {}, "codec.empty", f"decoded {sorted(decoded)}")

    @pytest.mark.parametrize(
        "shape, dtype",
        [
            ((), np.float32),
            ((0,), np.float32),
            ((3, 0), np.float64),
            ((7,), np.float16),
            ((6, 5), ml_dtypes.bfloat16),
            ((33, 17), np.float64),
            ((1,), np.float32),
            ((2, 3, 2, 2), np.float16),
        ],
    )
    def test_edge_tensors(self, shape: tuple[int, ...], dtype: Any) -> None:
        rng = np.random.default_rng(2)
        params = {"t": rng.normal(0, 1, shape).astype(dtype)}
        base = {"t": np.zeros(shape, dtype)}
        for b in (None, base):
            with _rule("codec.edge-tensors"):
                encoded = CodecPipeline([self._codec()]).encode(params, b)
                decoded = CodecPipeline([self._codec()]).decode(encoded, b)
            self._check_same_layout(params, decoded, "codec.edge-tensors")

    def test_repeated_encodes(self) -> None:
        params = self.make_parameters()
        base = self.make_base(params)
        pipeline = CodecPipeline([self._codec()])
        for _ in range(4):
            with _rule("codec.repeat"):
                decoded = pipeline.decode(pipeline.encode(params, base), base)
            self._check_same_layout(params, decoded, "codec.repeat")

    def test_corrupt_meta(self) -> None:
        codec = self._codec()
        encoded, meta = codec.encode(self._coded_input())
        meta = json.loads(json.dumps(meta))
        for mutated in _mutations(meta):
            self._decode_must_fail_cleanly(self._codec(), dict(encoded), mutated, "codec.corrupt-meta")

    def test_corrupt_arrays(self) -> None:
        codec = self._codec()
        encoded, meta = codec.encode(self._coded_input())
        for name, array in encoded.items():
            variants: list[dict[str, np.ndarray]] = [
                {k: v for k, v in encoded.items() if k != name},
                {**encoded, name: np.zeros((), np.float32)},
                {**encoded, name: np.zeros((3, 2), np.int8)},
                {**encoded, name: array.reshape(-1)[: max(array.size - 1, 0)]},
                {**encoded, name: np.concatenate([array.reshape(-1), array.reshape(-1)[:1]])},
                {**encoded, name: array.reshape(-1).view(np.uint8)},
            ]
            for arrays in variants:
                self._decode_must_fail_cleanly(self._codec(), arrays, copy.deepcopy(meta), "codec.corrupt-arrays")

    def test_pipeline_rejects_corrupt_payload(self) -> None:
        params = self.make_parameters()
        base = self.make_base(params)
        encoded = CodecPipeline([self._codec()]).encode(params, base)
        for i, (step, meta) in enumerate(encoded.codecs):
            for mutated in _mutations(meta, limit=40):
                codecs = list(encoded.codecs)
                codecs[i] = (step, mutated)
                bad = EncodedTensors(dict(encoded.arrays), codecs, encoded.delta)
                try:
                    CodecPipeline([self._codec()]).decode(bad, base)
                except CodecError:
                    pass
                except Exception as exc:
                    _fail("codec.corrupt-meta", f"pipeline step {step!r}: raised {type(exc).__name__}: {exc}", True)

    def test_metrics(self) -> None:
        codec = self._codec()
        with _rule("codec.metrics"):
            codec.encode(self._coded_input())
            metrics = codec.metrics()
        _check(isinstance(metrics, dict), "codec.metrics", type(metrics).__name__)
        for key, value in metrics.items():
            _check(isinstance(key, str) and isinstance(value, (int, float)), "codec.metrics", f"{key!r}: {value!r}")

    def test_deterministic(self) -> None:
        if not self.deterministic:
            pytest.skip("codec declared non-deterministic")
        arrays = self._coded_input()
        with _rule("codec.deterministic"):
            a, meta_a = self._codec().encode(arrays)
            b, meta_b = self._codec().encode(arrays)
        _check(parameters_equal(a, b) and meta_a == meta_b, "codec.deterministic", "two encodes differ")


# ---------------------------------------------------------------------- corruption


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths to every node of a JSON value (containers included)."""
    if path:
        yield path
    if isinstance(value, dict):
        for key in value:
            yield from _leaves(value[key], (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, (*path, i))


_DELETE = object()  # marker: remove the node instead of replacing it


def _replace(meta: Any, path: tuple[Any, ...], new: Any) -> Any:
    out = copy.deepcopy(meta)
    node = out
    for key in path[:-1]:
        node = node[key]
    if new is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = copy.deepcopy(new)
    return out


def _mutations(meta: dict[str, Any], limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Corrupted copies of ``meta``: each node deleted, or replaced by each bad value."""
    yield {}
    for count, path in enumerate(_leaves(meta)):
        if limit is not None and count >= limit:
            return
        for bad in (_DELETE, *BAD_VALUES):
            yield _replace(meta, path, bad)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 300 else text[:297] + "..."
