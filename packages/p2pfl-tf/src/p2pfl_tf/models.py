"""Example models for MNIST-shaped data: compiled Keras 3 models taking ``(28, 28)`` inputs.

Every initializer (and dropout) is seeded, so a factory called with the same arguments
builds the same model in any process or thread, whatever Keras' global random state: the
nodes of an experiment start from one model without any global seeding.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from p2pfl_tf._tfenv import keras


def _seeds(seed: int) -> Iterator[int]:
    """Distinct seeds, one per initializer (a seeded Keras initializer repeats its values)."""
    k = 0
    while True:
        yield int(seed) * 1000 + k
        k += 1


def _compile(model: Any, lr: float, optimizer: str) -> Any:
    optimizers = {"sgd": lambda: keras.optimizers.SGD(learning_rate=lr), "adam": lambda: keras.optimizers.Adam(lr)}
    if optimizer not in optimizers:
        raise ValueError(f"optimizer must be one of {sorted(optimizers)}, got {optimizer!r}")
    model.compile(
        optimizer=optimizers[optimizer](),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def mnist_mlp(
    hidden: int = 128, num_classes: int = 10, *, lr: float = 0.001, optimizer: str = "adam", seed: int = 0
) -> Any:
    """A one-hidden-layer ReLU MLP: ``(28, 28)`` -> flatten -> ``hidden`` -> ``num_classes`` logits.

    Compiled with sparse categorical cross-entropy on logits and an accuracy metric.

    Args:
        hidden: width of the hidden layer.
        num_classes: number of output classes.
        lr: learning rate of the optimizer.
        optimizer: ``"adam"`` or ``"sgd"``.
        seed: seed of the initial weights.
    """
    seeds = _seeds(seed)
    model = keras.Sequential(
        [
            keras.Input((28, 28), name="image"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(
                hidden, activation="relu", kernel_initializer=keras.initializers.HeUniform(next(seeds)), name="hidden"
            ),
            keras.layers.Dense(
                num_classes, kernel_initializer=keras.initializers.GlorotUniform(next(seeds)), name="logits"
            ),
        ],
        name="mnist_mlp",
    )
    return _compile(model, lr, optimizer)


def mnist_cnn(
    num_classes: int = 10, *, lr: float = 0.001, optimizer: str = "adam", dropout: float = 0.25, seed: int = 0
) -> Any:
    """A small CNN with batch normalization: two conv blocks (16 and 32 filters), dropout, logits.

    Compiled like :func:`mnist_mlp`. Its BatchNormalization layers carry non-trainable
    moving statistics, which travel with the other parameters.

    Args:
        num_classes: number of output classes.
        lr: learning rate of the optimizer.
        optimizer: ``"adam"`` or ``"sgd"``.
        dropout: dropout rate before the output layer.
        seed: seed of the initial weights and of the dropout masks.
    """
    seeds = _seeds(seed)
    layers: list[Any] = [keras.Input((28, 28), name="image"), keras.layers.Reshape((28, 28, 1), name="channel")]
    for i, filters in enumerate((16, 32)):
        layers += [
            keras.layers.Conv2D(
                filters, 3, padding="same", use_bias=False,
                kernel_initializer=keras.initializers.HeUniform(next(seeds)), name=f"conv{i}",
            ),
            keras.layers.BatchNormalization(name=f"bn{i}"),
            keras.layers.Activation("relu", name=f"relu{i}"),
            keras.layers.MaxPooling2D(2, name=f"pool{i}"),
        ]  # fmt: skip
    layers += [
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dropout(dropout, seed=next(seeds), name="dropout"),
        keras.layers.Dense(
            num_classes, kernel_initializer=keras.initializers.GlorotUniform(next(seeds)), name="logits"
        ),
    ]
    return _compile(keras.Sequential(layers, name="mnist_cnn"), lr, optimizer)
