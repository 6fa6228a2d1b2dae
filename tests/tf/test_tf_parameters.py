"""KerasLearner parameters: names independent of Keras' counters, exact dtypes, checked loading."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytestmark = pytest.mark.framework

from tf_testkit import bn_model, table_data  # noqa: E402

from p2pfl.parameters import ParameterMismatchError, parameters_equal  # noqa: E402
from p2pfl_tf._tfenv import keras  # noqa: E402
from p2pfl_tf.learner import KerasLearner  # noqa: E402
from p2pfl_tf.weights import canonical_names  # noqa: E402

BN_NAMES = [
    "dense/kernel", "dense/bias",
    "batch_normalization/gamma", "batch_normalization/beta",
    "batch_normalization/moving_mean", "batch_normalization/moving_variance",
    "dense_1/kernel", "dense_1/bias",
]  # fmt: skip


def test_canonical_names_drop_counters_and_model_scope() -> None:
    paths = ["sequential_4/dense_7/kernel", "sequential_4/dense_7/bias", "sequential_4/dense_9/kernel"]
    assert canonical_names(paths, "sequential_4") == ["dense/kernel", "dense/bias", "dense_1/kernel"]


def test_canonical_names_are_per_parent_and_unique() -> None:
    paths = ["m/w", "m/dense_4/kernel", "m/block_2/dense_5/kernel", "m/block_3/dense_6/kernel", "m/dense_4/kernel"]
    assert canonical_names(paths, "m") == [
        "w", "dense/kernel", "block/dense/kernel", "block_1/dense/kernel", "dense/kernel_1",
    ]  # fmt: skip
    # A model whose paths do not all start with its name keeps them (functional models).
    assert canonical_names(["dense_3/kernel", "other/x"], "functional") == ["dense/kernel", "other/x"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return table_data(rng.normal(size=(48, 6)), rng.integers(0, 3, size=48), num_classes=3, batch_size=16)


def test_names_do_not_depend_on_how_many_models_exist(data) -> None:
    names = [list(KerasLearner(bn_model((6,), 3, seed=s), data).get_parameters()) for s in range(3)]
    other_thread: list[list[str]] = []
    thread = threading.Thread(
        target=lambda: other_thread.append(list(KerasLearner(bn_model((6,), 3), data).get_parameters()))
    )
    thread.start()
    thread.join()
    assert names == [BN_NAMES] * 3
    assert other_thread == [BN_NAMES]


class TwoLayer(keras.Model):
    """A subclassed model: unbuilt until first called, its variables live under its own scope."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = keras.layers.Dense(4, kernel_initializer=keras.initializers.GlorotUniform(seed=1))
        self.out = keras.layers.Dense(3, kernel_initializer=keras.initializers.GlorotUniform(seed=2))

    def call(self, x):
        return self.out(self.hidden(x))


def test_unbuilt_subclassed_models_are_built_and_named_alike(data) -> None:
    learners = []
    for _ in range(2):
        model = TwoLayer()
        model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        assert not model.weights
        learners.append(KerasLearner(model, data))
    expected = ["dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"]
    assert [list(lrn.get_parameters()) for lrn in learners] == [expected, expected]
    assert parameters_equal(learners[0].get_parameters(), learners[1].get_parameters())


def test_batchnorm_roundtrip_gives_identical_weights_and_outputs(data) -> None:
    trained = KerasLearner(bn_model((6,), 3, seed=0), data, seed=0)
    trained.fit(2)  # moves the moving statistics away from their initial 0 / 1
    params = trained.get_parameters()
    assert not np.all(params["batch_normalization/moving_mean"] == 0)
    assert trained.trainable_names() == [n for n in BN_NAMES if "moving" not in n]

    fresh = KerasLearner(bn_model((6,), 3, seed=7), data, seed=1)
    assert not parameters_equal(fresh.get_parameters(), params)
    fresh.set_parameters(params)
    assert parameters_equal(fresh.get_parameters(), params)
    x, _ = data.numpy("test")
    assert np.array_equal(fresh.predict(x), trained.predict(x))


def test_dtypes_are_kept_exactly() -> None:
    import ml_dtypes

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, dtype="bfloat16"), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(1)
    learner = KerasLearner(
        model, table_data(rng.normal(size=(8, 4)), rng.integers(0, 2, 8), num_classes=2, batch_size=4)
    )
    params = learner.get_parameters()
    assert params["dense/kernel"].dtype == np.dtype(ml_dtypes.bfloat16)
    assert params["dense_1/kernel"].dtype == np.float32
    new = {n: (rng.normal(size=v.shape)).astype(v.dtype) for n, v in params.items()}
    learner.set_parameters(new)
    assert parameters_equal(learner.get_parameters(), new)


def test_set_parameters_names_what_differs(data) -> None:
    learner = KerasLearner(bn_model((6,), 3), data)
    params = learner.get_parameters()
    before = learner.get_parameters()

    missing = {n: v for n, v in params.items() if n != "batch_normalization/moving_mean"}
    with pytest.raises(ParameterMismatchError, match="batch_normalization/moving_mean"):
        learner.set_parameters(missing)

    reshaped = {**params, "dense_1/kernel": np.zeros((16, 4), np.float32)}
    with pytest.raises(ParameterMismatchError, match=r"dense_1/kernel: shape \(16, 4\)"):
        learner.set_parameters(reshaped)

    # Every value changed, the last one of the wrong kind: the load must fail as a whole.
    wrong_kind = {n: v + 1 for n, v in params.items()}
    wrong_kind["dense_1/bias"] = np.zeros(3, np.int32)
    with pytest.raises(ParameterMismatchError, match="dense_1/bias: dtype int32"):
        learner.set_parameters(wrong_kind)
    # A rejected load changes nothing, even when the bad tensor comes after good ones.
    assert parameters_equal(learner.get_parameters(), before)
