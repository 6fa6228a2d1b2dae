"""Parameters of Flax models: names, dtypes (bfloat16 included), round-trips and mismatches."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from flax import nnx
from flax_testkit import TinyBN, TinyMLP, node_data_from_arrays

from p2pfl.compression import CodecPipeline
from p2pfl.parameters import ParameterMismatchError, parameters_equal
from p2pfl.wire import Message, ModelPayload, decode_message, encode_message
from p2pfl_flax.learner import FlaxLearner
from p2pfl_flax.models import mnist_cnn, mnist_mlp

pytestmark = pytest.mark.framework


def _mnist_like(n: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, n)
    return node_data_from_arrays(x, y, x[:16], y[:16], classes=10, batch_size=16), x[:8]


def _state_bytes(model: nnx.Module) -> dict[str, bytes]:
    """Every variable of ``model`` except RNG state, straight from Flax (a second method)."""
    flat = jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Not(nnx.RngState)))[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf).tobytes() for path, leaf in flat}


def test_names_are_slash_joined_paths_in_model_order() -> None:
    data, _ = _mnist_like()
    learner = FlaxLearner(mnist_cnn(seed=0), data)
    params = learner.get_parameters()
    assert list(params) == [
        "conv1/bias", "conv1/kernel", "conv2/bias", "conv2/kernel",
        "norm1/bias", "norm1/mean", "norm1/scale", "norm1/var",
        "out/bias", "out/kernel",
    ]  # fmt: skip
    assert params["conv1/kernel"].shape == (3, 3, 1, 16)
    # Batch statistics travel but are not trained by the optimizer.
    assert learner.trainable_names() == [n for n in params if n not in ("norm1/mean", "norm1/var")]


def test_rng_state_is_not_a_parameter() -> None:
    data = node_data_from_arrays(np.ones((4, 3)), np.zeros(4), np.ones((2, 3)), np.zeros(2), classes=2, batch_size=2)
    learner = FlaxLearner(TinyMLP(3, 2, dropout=0.5), data)
    assert list(learner.get_parameters()) == ["hidden/bias", "hidden/kernel", "out/bias", "out/kernel"]


@pytest.mark.parametrize(
    "build", [lambda s: mnist_cnn(seed=s), lambda s: mnist_mlp(hidden=32, seed=s, dtype="bfloat16")]
)
def test_round_trip_gives_identical_state_and_outputs(build) -> None:
    data, x = _mnist_like()
    source = FlaxLearner(build(0), data, seed=0, optimizer="sgd", lr=0.1)
    source.fit(1)  # non-trivial batch statistics too
    target = FlaxLearner(build(1), data, seed=1)
    assert not parameters_equal(source.get_parameters(), target.get_parameters())

    target.set_parameters(source.get_parameters())

    assert parameters_equal(target.get_parameters(), source.get_parameters())
    assert _state_bytes(target.model) == _state_bytes(source.model)
    out_source, out_target = np.asarray(source.model(jnp.asarray(x))), np.asarray(target.model(jnp.asarray(x)))
    assert out_source.dtype == out_target.dtype
    assert out_source.tobytes() == out_target.tobytes()


def test_bfloat16_model_round_trips_bit_identically_through_the_wire() -> None:
    data, x = _mnist_like()
    source = FlaxLearner(mnist_mlp(hidden=32, seed=3, dtype="bfloat16"), data)
    params = source.get_parameters()
    assert {p.dtype for p in params.values()} == {np.dtype(ml_dtypes.bfloat16)}

    payload = ModelPayload(tensors=CodecPipeline().encode(params), num_samples=64, contributors=("node-0",))
    received = decode_message(encode_message(Message(kind="model", origin="node-0", round=1, model=payload)))
    decoded = CodecPipeline().decode(received.model.tensors)

    target = FlaxLearner(mnist_mlp(hidden=32, seed=4, dtype="bfloat16"), data)
    target.set_parameters(decoded)
    got = target.get_parameters()
    assert parameters_equal(got, params)
    assert all(got[n].dtype == np.dtype(ml_dtypes.bfloat16) for n in got)
    assert np.asarray(target.model(jnp.asarray(x))).tobytes() == np.asarray(source.model(jnp.asarray(x))).tobytes()


def test_integer_variables_and_dtypes_are_kept() -> None:
    data = node_data_from_arrays(
        np.ones((8, 4)), np.arange(8) % 2, np.ones((4, 4)), np.arange(4) % 2, classes=2, batch_size=4
    )
    learner = FlaxLearner(TinyBN(4, 2), data)
    learner.fit(1)
    params = learner.get_parameters()
    assert params["calls"].dtype == np.int32 and params["calls"].shape == () and int(params["calls"]) == 2
    # Values of another dtype (e.g. a float64 average) are cast to the model's dtypes.
    learner.set_parameters({n: v.astype(np.float64) for n, v in params.items()})
    assert {n: v.dtype for n, v in learner.get_parameters().items()} == {n: v.dtype for n, v in params.items()}


def test_set_parameters_names_what_differs() -> None:
    data, _ = _mnist_like()
    learner = FlaxLearner(mnist_mlp(hidden=32), data)
    params = learner.get_parameters()
    bad = dict(params)
    del bad["out/bias"]
    bad["hidden/kernel"] = np.zeros((784, 31), np.float32)
    bad["extra"] = np.zeros(1, np.float32)
    with pytest.raises(ParameterMismatchError) as info:
        learner.set_parameters(bad)
    message = str(info.value)
    assert "out/bias" in message and "hidden/kernel" in message and "(784, 31)" in message and "extra" in message
    assert parameters_equal(learner.get_parameters(), params)  # nothing was loaded
