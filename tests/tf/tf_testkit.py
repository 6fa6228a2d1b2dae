"""Small Keras models and data for the p2pfl-tf tests (kept tiny: the CI machine is shared)."""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np

from p2pfl.learning.learner import NodeData
from p2pfl_tf._tfenv import keras


def init(seed: int, k: int) -> Any:
    """A seeded Glorot initializer; ``k`` tells a model's layers apart (seeded initializers repeat)."""
    return keras.initializers.GlorotUniform(seed=seed * 100 + k)


def mlp(num_features: int, num_classes: int, *, seed: int = 0, lr: float = 0.1, hidden: int = 16) -> Any:
    """An auto-named ``Dense -> Dense`` MLP compiled with SGD, logits cross-entropy and accuracy."""
    model = keras.Sequential(
        [
            keras.Input((num_features,)),
            keras.layers.Dense(hidden, activation="relu", kernel_initializer=init(seed, 0)),
            keras.layers.Dense(num_classes, kernel_initializer=init(seed, 1)),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def bn_model(input_shape: tuple[int, ...], num_classes: int, *, seed: int = 0, lr: float = 0.01) -> Any:
    """Flatten -> Dense -> BatchNormalization -> ReLU -> Dense, with Adam (non-trainable moving statistics)."""
    model = keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(16, kernel_initializer=init(seed, 0)),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("relu"),
            keras.layers.Dense(num_classes, kernel_initializer=init(seed, 1)),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def scalar_model(w: float, optimizer: Any) -> Any:
    """``y = w * x`` with one weight (shape ``(1, 1)``), mean squared error."""
    model = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer=keras.initializers.Constant(w))]
    )
    model.compile(optimizer=optimizer, loss="mse")
    return model


def table_data(x: np.ndarray, y: np.ndarray, *, num_classes: int, batch_size: int) -> NodeData:
    """NodeData whose train and test splits are both ``(x, y)`` (feature column ``"x"``)."""
    features = datasets.Features(
        {
            "x": datasets.Sequence(datasets.Value("float32"), length=x.shape[1]),
            "label": datasets.Value("int64"),
        }
    )
    split = datasets.Dataset.from_dict({"x": x.astype(np.float32), "label": y.astype(np.int64)}, features=features)
    return NodeData(
        train=split, test=split, features="x", label="label", num_classes=num_classes,
        batch_size=batch_size, input_shape=(x.shape[1],),
    )  # fmt: skip
