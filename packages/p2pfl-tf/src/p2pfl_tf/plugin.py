"""Hook implementations of p2pfl-tf (entry point ``p2pfl-tf`` in group ``p2pfl``).

Targets are lazy ``"module:attr"`` strings: listing plugins must not import TensorFlow.
"""

from __future__ import annotations

from typing import Any

from p2pfl import hookimpl

#: How Keras 3's model base class appears in ``type(model).__mro__`` (module.qualname):
#: ``keras.Model`` is an alias of it, and Sequential, Functional and subclassed models derive from it.
KERAS_MODEL_TYPE = "keras.src.models.model.Model"


@hookimpl
def p2pfl_register_learners(register: Any) -> None:
    register(
        "tensorflow",
        "p2pfl_tf.learner:KerasLearner",
        model_types=[KERAS_MODEL_TYPE],
        description="compiled Keras 3 models on the TensorFlow backend (model.fit / model.evaluate)",
    )


@hookimpl
def p2pfl_register_examples(register: Any) -> None:
    register(
        "mnist-tf",
        "p2pfl_tf.examples:mnist_tf",
        description="8 Keras MLP nodes on a ring learn MNIST (iid, in-memory, FedAvg)",
    )
