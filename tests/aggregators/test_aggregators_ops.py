"""The blocked kernels equal a straightforward float64 loop bitwise."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from p2pfl_aggregators import ops


@pytest.mark.parametrize(
    "dtype", [np.float32, np.float64, np.float16, ml_dtypes.bfloat16, np.int64, np.int32, np.uint8, np.complex64]
)
@pytest.mark.parametrize("shape", [(), (0,), (7, 3), (ops.BLOCK * 3 + 17,)])
def test_weighted_mean_is_bitwise_a_plain_float64_loop(dtype, shape):
    rng = np.random.default_rng(0)
    arrays = []
    for _ in range(5):
        values = rng.normal(0, 50, size=shape)
        if np.dtype(dtype).kind == "c":
            values = values + 1j * rng.normal(size=shape)
        if np.dtype(dtype).kind == "u":
            values = np.abs(values)
        arrays.append(np.asarray(values).astype(dtype))
    weights = [3.0, 1.0, 7.0, 2.0, 5.0]
    got = ops.weighted_mean(arrays, weights)
    expected = plain_weighted_mean(arrays, weights)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.tobytes() == expected.tobytes()


def plain_weighted_mean(arrays, weights):
    """The textbook loop: whole-array float64 (complex128) accumulation in order, then cast back."""
    acc_dtype = np.complex128 if arrays[0].dtype.kind == "c" else np.float64
    acc = np.zeros(arrays[0].shape, dtype=acc_dtype)
    total = sum(weights)
    for array, weight in zip(arrays, weights):
        acc += array.astype(acc_dtype) * (weight / total)
    if arrays[0].dtype.kind in "iub":
        acc = np.asarray(np.rint(acc))
    return acc.astype(arrays[0].dtype)


def test_squared_distances_by_hand_and_across_blocks():
    rows = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    np.testing.assert_array_equal(ops.squared_distances(rows), [[0, 25, 2], [25, 0, 13], [2, 13, 0]])
    rng = np.random.default_rng(1)
    big = rng.normal(size=(4, ops.BLOCK * 2 + 5))
    expected = ((big[:, None, :] - big[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(ops.squared_distances(big), expected, rtol=1e-12)
    np.testing.assert_allclose(ops.squared_norms_to(big, big[0]), expected[0], rtol=1e-12)


def test_weighted_mean64_rejects_zero_weights():
    with pytest.raises(ValueError, match="positive"):
        ops.weighted_mean64([np.ones(2)], [0.0])
