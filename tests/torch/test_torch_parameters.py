"""Parameters of the torch learner: the full state_dict, exact dtypes, clear mismatch errors."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch
from torch_testkit import ConvBNNet, tiny_mlp

from p2pfl.compression.codec import CodecPipeline
from p2pfl.parameters import ParameterMismatchError, parameters_equal
from p2pfl.wire import Message, ModelPayload, decode_message, encode_message
from p2pfl_torch.learner import TorchLearner
from p2pfl_torch.tensors import to_numpy, to_tensor

pytestmark = pytest.mark.framework


@pytest.fixture
def image_data(make_node_data):
    return make_node_data(num_train=64, num_test=32, num_features=16, num_classes=3, input_shape=(1, 4, 4))


def test_conv_bn_linear_roundtrip_copies_state_and_outputs(image_data) -> None:
    trained = TorchLearner(ConvBNNet(seed=1), image_data, seed=0, lr=0.1)
    trained.fit(2)  # BatchNorm running statistics and num_batches_tracked move away from their defaults
    source_state = {k: v.clone() for k, v in trained.net.state_dict().items()}
    assert int(source_state["bn.num_batches_tracked"]) == 2 * 4  # 64 rows / 16 per batch, 2 epochs

    other = TorchLearner(ConvBNNet(seed=2), image_data, seed=0, lr=0.1)
    other.set_parameters(trained.get_parameters())

    target_state = other.net.state_dict()
    assert list(target_state) == list(source_state)
    for name, value in source_state.items():
        assert target_state[name].dtype == value.dtype, name
        assert torch.equal(target_state[name], value), name
    x = torch.from_numpy(image_data.numpy("test")[0])
    trained.net.eval()
    other.net.eval()
    with torch.no_grad():
        assert torch.equal(trained.net(x), other.net(x))


def test_parameters_are_the_state_dict_with_its_names_order_and_dtypes(image_data) -> None:
    net = ConvBNNet()
    params = TorchLearner(net, image_data).get_parameters()
    state = net.state_dict()
    assert list(params) == list(state)  # buffers included, no wrapper prefix
    assert params["bn.num_batches_tracked"].dtype == np.int64 and params["bn.num_batches_tracked"].shape == ()
    for name, value in state.items():
        assert np.array_equal(params[name], value.numpy()), name


def test_set_parameters_names_what_differs(image_data) -> None:
    learner = TorchLearner(ConvBNNet(), image_data)
    params = learner.get_parameters()
    wrong = dict(params)
    wrong["fc.weight"] = np.zeros((2, 2), np.float32)
    del wrong["bn.running_var"]
    wrong["extra.bias"] = np.zeros(3, np.float32)
    with pytest.raises(ParameterMismatchError) as info:
        learner.set_parameters(wrong)
    message = str(info.value)
    assert "fc.weight" in message and "bn.running_var" in message and "extra.bias" in message
    # nothing was written: the model still holds its own parameters
    assert parameters_equal(learner.get_parameters(), params)


def test_integer_buffer_rejects_float_values(image_data) -> None:
    learner = TorchLearner(ConvBNNet(), image_data)
    params = learner.get_parameters()
    params["bn.num_batches_tracked"] = np.array(1.5, np.float32)
    with pytest.raises(ParameterMismatchError, match="num_batches_tracked"):
        learner.set_parameters(params)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_low_and_high_precision_models_keep_their_dtype(make_node_data, dtype) -> None:
    data = make_node_data(num_train=32, num_test=16)
    learner = TorchLearner(tiny_mlp(dtype=dtype), data)
    params = learner.get_parameters()
    expected = {torch.float16: np.float16, torch.bfloat16: ml_dtypes.bfloat16, torch.float64: np.float64}[dtype]
    assert all(value.dtype == np.dtype(expected) for value in params.values())
    # values set are read back bit for bit
    rng = np.random.default_rng(0)
    new = {name: rng.normal(size=value.shape).astype(value.dtype) for name, value in params.items()}
    learner.set_parameters(new)
    assert parameters_equal(learner.get_parameters(), new)


def test_bfloat16_conversion_is_bit_exact_for_every_bit_pattern() -> None:
    # All 65536 bfloat16 bit patterns (NaNs, infinities, subnormals included), both directions.
    bits = np.arange(-(2**15), 2**15, dtype=np.int16)
    array = bits.view(ml_dtypes.bfloat16)
    tensor = to_tensor(array)
    assert tensor.dtype == torch.bfloat16
    assert np.array_equal(tensor.view(torch.int16).numpy(), bits)
    assert np.array_equal(to_numpy(tensor).view(np.int16), bits)


def test_bfloat16_model_roundtrips_bit_identically_through_the_wire(make_node_data) -> None:
    data = make_node_data(num_train=32, num_test=16)
    sender = TorchLearner(tiny_mlp(seed=3, dtype=torch.bfloat16), data)
    params = sender.get_parameters()
    pipeline = CodecPipeline()
    message = Message(
        kind="model", origin="node-0", round=1, model=ModelPayload(pipeline.encode(params), 32, ("node-0",))
    )

    received = decode_message(encode_message(message))
    assert received.model is not None
    decoded = pipeline.decode(received.model.tensors)
    assert parameters_equal(decoded, params)

    receiver = TorchLearner(tiny_mlp(seed=4, dtype=torch.bfloat16), data)
    receiver.set_parameters(decoded)
    for name, value in sender.net.state_dict().items():
        got = receiver.net.state_dict()[name]
        assert got.dtype == torch.bfloat16
        assert torch.equal(got.view(torch.int16), value.view(torch.int16)), name


def test_returned_arrays_are_copies_and_frozen_inputs_are_accepted(make_node_data) -> None:
    data = make_node_data(num_train=32, num_test=16)
    learner = TorchLearner(tiny_mlp(), data)
    params = learner.get_parameters()
    frozen = {}
    for name, value in params.items():
        value.flags.writeable = False  # what p2pfl sends is read-only
        frozen[name] = value
    learner.set_parameters(frozen)
    out = learner.get_parameters()
    out["1.weight"][...] = 0.0
    assert not np.array_equal(learner.get_parameters()["1.weight"], out["1.weight"])
