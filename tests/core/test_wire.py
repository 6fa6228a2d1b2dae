"""Wire encoding: exact tensors, limits checked before allocation, malformed input rejected (issue 3)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from p2pfl.compression import CodecPipeline
from p2pfl.parameters import parameters_equal
from p2pfl.wire import Message, ModelPayload, WireError, WireLimits, decode_message, encode_message
from p2pfl.wire import p2pfl_wire_pb2 as pb
from p2pfl.wire.encoding import message_to_proto


def sample_parameters():
    return {
        "w": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
        "half": np.array([1.5, -2.25, 65504.0], dtype=np.float16),
        "bf16": np.array([[1.0, -3.5], [0.0078125, 256.0]], dtype=ml_dtypes.bfloat16),
        "counter": np.array(123456789012, dtype=np.int64),  # 0-d integer buffer
        "empty": np.zeros((0, 5), dtype=np.float32),
        "mask": np.array([True, False, True]),
        "f64": np.array([np.pi, -np.e]),
    }


def roundtrip(msg: Message, limits: WireLimits | None = None) -> Message:
    return decode_message(encode_message(msg), *(limits,) if limits else ())


def model_message(params) -> Message:
    encoded = CodecPipeline().encode(params)
    return Message(
        "update",
        origin="a",
        round=3,
        model=ModelPayload(encoded, 42, ("a", "b"), {"x.c": {"c": np.ones(2)}}),
        experiment="exp",
    )


def test_every_dtype_and_shape_survives_bit_for_bit():
    params = sample_parameters()
    back = roundtrip(model_message(params))
    decoded = CodecPipeline().decode(back.model.tensors)
    assert parameters_equal(decoded, params)
    assert [decoded[n].dtype for n in params] == [params[n].dtype for n in params]
    assert decoded["counter"].shape == () and decoded["empty"].shape == (0, 5)
    assert back.model.num_samples == 42 and back.model.contributors == ("a", "b")
    np.testing.assert_array_equal(back.model.extras["x.c"]["c"], np.ones(2))
    assert (back.kind, back.origin, back.round, back.experiment) == ("update", "a", 3, "exp")


def test_decoded_tensors_are_read_only():
    back = roundtrip(model_message(sample_parameters()))
    array = next(iter(back.model.tensors.arrays.values()))
    with pytest.raises(ValueError):
        array[...] = 0


def test_control_message_fields():
    msg = Message("start_learning", origin="n1", args=("x", "y"), ttl=5, covered=frozenset({"n1", "n2"}))
    back = roundtrip(msg)
    assert back == msg


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda env: env.model.tensors[0].shape.extend([2**40, 2**40]), "declares"),
        (lambda env: setattr(env.model.tensors[0], "dtype", "object"), "not allowed"),
        (lambda env: setattr(env.model.tensors[0], "data", env.model.tensors[0].data[:-1]), "needs"),
        (lambda env: setattr(env, "version", 99), "unsupported wire version"),
        (lambda env: setattr(env, "origin", ""), "lacks"),
        (lambda env: env.model.codecs[0].__setattr__("meta_json", "{not json"), "not JSON"),
        (lambda env: env.model.tensors.add().CopyFrom(env.model.tensors[0]), "appears twice"),
    ],
)
def test_malformed_fields_are_rejected_with_a_reason(mutate, reason):
    env = message_to_proto(model_message(sample_parameters()))
    mutate(env)
    with pytest.raises(WireError, match=reason):
        decode_message(env.SerializeToString())


@pytest.mark.parametrize("data", [b"\xff" * 50, b"\x0a\x05ab", bytes(range(256))])
def test_random_bytes_raise_wire_error(data):
    with pytest.raises(WireError):
        decode_message(data)


def test_limits_are_enforced_before_allocation():
    msg = model_message({"big": np.zeros(1000, dtype=np.float32)})
    with pytest.raises(WireError, match="limit 100"):
        roundtrip(msg, WireLimits(max_tensor_bytes=100))
    with pytest.raises(WireError, match="exceeds the limit"):
        roundtrip(msg, WireLimits(max_message_bytes=10))
    with pytest.raises(WireError, match="tensors"):
        roundtrip(msg, WireLimits(max_tensors=1))  # one model tensor + one extra


def test_relayed_copy_leaves_the_original_untouched():
    msg = Message("x", origin="a", ttl=3)
    relayed = msg.relayed("b", frozenset({"a", "b"}))
    assert (msg.sender, msg.ttl, msg.covered) == ("a", 3, frozenset())
    assert (relayed.sender, relayed.ttl, relayed.msg_id) == ("b", 2, msg.msg_id)
    with pytest.raises(AttributeError):
        msg.ttl = 9  # frozen


def test_envelope_type_is_the_proto():
    assert isinstance(message_to_proto(Message("x", origin="a")), pb.Envelope)
