"""Hook implementations of p2pfl-torch (entry point ``p2pfl-torch`` of group ``p2pfl``).

Every target is a lazy ``"module:attr"`` string: listing plugins must not import torch.
"""

from __future__ import annotations

from typing import Any

from p2pfl import hookimpl


@hookimpl
def p2pfl_register_learners(register: Any) -> None:
    # Every torch model (LightningModules included) is a torch.nn.Module: a node given one
    # picks this learner without the config naming it.
    register("torch", "p2pfl_torch.learner:TorchLearner", model_types=["torch.nn.modules.module.Module"])


@hookimpl
def p2pfl_register_examples(register: Any) -> None:
    register(
        "mnist-torch",
        "p2pfl_torch.examples:mnist_torch",
        description="8 PyTorch MLP nodes on a ring learn MNIST (iid, in-memory, FedAvg)",
    )
    register(
        "mnist-torch-cnn",
        "p2pfl_torch.examples:mnist_torch_cnn",
        description="8 PyTorch CNN nodes on a ring learn MNIST (iid, in-memory, FedAvg)",
    )
