"""Training behaviour of the torch learner: interrupt, reproducibility, metrics, options, quiet console."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn
from torch_testkit import LitClassifier, random_node_data, tiny_mlp

from p2pfl.parameters import parameters_equal
from p2pfl_torch.learner import TorchLearner
from p2pfl_torch.process import THREADS_ENV, thread_budget

pytestmark = pytest.mark.framework

DEADLINE = 120.0  # seconds; generous, only reached if something is broken


class Gate(L.LightningModule):
    """Blocks in training_step at batch ``at`` until released, and counts the batches it ran."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.net = tiny_mlp()
        self.at = at
        self.reached = threading.Event()
        self.release = threading.Event()
        self.batches = 0

    def training_step(self, batch, batch_idx):
        self.batches += 1
        if batch_idx == self.at:
            self.reached.set()
            assert self.release.wait(DEADLINE)
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def test_step(self, batch, batch_idx):
        self.log("loss", 0.0)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_interrupt_during_a_long_epoch_stops_within_one_batch() -> None:
    data = random_node_data(20_000, 8, batch_size=1)  # one epoch = 20,000 batches
    module = Gate(at=5)
    learner = TorchLearner(module, data)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(learner.fit, 1)
        assert module.reached.wait(DEADLINE)
        learner.interrupt()  # from another thread, while batch 5 is running
        module.release.set()
        result = future.result(timeout=DEADLINE)
    assert result.interrupted
    assert module.batches == 6 and result.num_steps == 6  # batch 5 finished, batch 6 never started


def test_same_seed_gives_identical_models_sequentially_and_concurrently() -> None:
    datas = [random_node_data(96, 16, seed=i) for i in range(4)]

    def run(node: int) -> dict[str, np.ndarray]:
        learner = TorchLearner(tiny_mlp(seed=7), datas[node], seed=node, lr=0.1, momentum=0.9)
        for _ in range(2):
            learner.fit(1)
        return learner.get_parameters()

    sequential = [run(i) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:  # nodes of one process train concurrently
        concurrent = list(pool.map(run, range(4)))
    for a, b in zip(sequential, concurrent):
        assert parameters_equal(a, b)
    # and the seed matters: node 0 trained with another seed ends elsewhere
    other = TorchLearner(tiny_mlp(seed=7), datas[0], seed=99, lr=0.1, momentum=0.9)
    other.fit(1)
    other.fit(1)
    assert not parameters_equal(other.get_parameters(), sequential[0])


def test_every_fit_draws_a_new_order_from_the_node_seed() -> None:
    learner = TorchLearner(tiny_mlp(), random_node_data(40, 8, batch_size=40))
    orders = []
    for _ in range(2):
        orders.append(next(iter(learner.loaders.train(learner._fit_seed())))[1].tolist())
    assert orders[0] != orders[1] and sorted(orders[0]) == sorted(orders[1])


def test_lightning_module_metrics_are_reported_with_standard_names() -> None:
    data = random_node_data(48, 24)
    learner = TorchLearner(LitClassifier(), data)
    result = learner.fit(1)
    assert set(result.metrics) == {"train_loss"}
    metrics = learner.evaluate()
    assert metrics["loss"] == metrics["val_loss"] and metrics["accuracy"] == metrics["val_acc"]
    assert metrics["num_samples"] == 24.0
    # accuracy is the batch-size weighted mean of the logged values, as Lightning's on_epoch
    learner.net.eval()
    x, y = (torch.from_numpy(a) for a in data.numpy("test"))
    with torch.no_grad():
        expected = (learner.net(x).argmax(1) == y).float().mean().item()
    assert metrics["accuracy"] == pytest.approx(expected, abs=1e-6)


def test_plain_module_metrics_match_a_direct_computation() -> None:
    data = random_node_data(40, 30, batch_size=8)  # uneven last batch: weights matter
    learner = TorchLearner(tiny_mlp(), data, lr=0.1)
    metrics = learner.evaluate()
    x, y = (torch.from_numpy(a) for a in data.numpy("test"))
    with torch.no_grad():
        logits = learner.net(x)
    assert metrics["loss"] == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-5)
    assert metrics["accuracy"] == pytest.approx((logits.argmax(1) == y).double().mean().item())


def test_scheduler_and_mean_learning_rate() -> None:
    class Scheduled(LitClassifier):
        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=0.4)
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    learner = TorchLearner(Scheduled(), random_node_data(32, 8, batch_size=16))
    result = learner.fit(1)
    assert result.num_steps == 2
    assert result.learning_rate == pytest.approx((0.4 + 0.2) / 2)


def test_batch_start_returning_minus_one_ends_the_epoch() -> None:
    class StopsEarly(LitClassifier):
        def on_train_batch_start(self, batch, batch_idx):
            return -1 if batch_idx == 2 else None

    result = TorchLearner(StopsEarly(), random_node_data(64, 8, batch_size=8)).fit(2)
    assert result.num_steps == 4 and not result.interrupted


def test_options_are_validated_with_clear_errors() -> None:
    data = random_node_data(8, 8)
    with pytest.raises(TypeError, match=r"unknown torch learner option.*lerning_rate"):
        TorchLearner(tiny_mlp(), data, lerning_rate=0.1)
    with pytest.raises(TypeError, match=r"plain torch\.nn\.Module only"):
        TorchLearner(LitClassifier(), data, lr=0.1)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        TorchLearner(tiny_mlp(), data, loss="hinge")
    with pytest.raises(ValueError, match="momentum applies to sgd and rmsprop"):
        TorchLearner(tiny_mlp(), data, optimizer="adam", momentum=0.9)
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        TorchLearner(object(), data)


def test_named_optimizer_and_custom_loss_by_module_path() -> None:
    learner = TorchLearner(
        tiny_mlp(), random_node_data(32, 8), loss="torch.nn.functional:cross_entropy", optimizer="adamw", lr=0.01
    )
    assert isinstance(learner.module.configure_optimizers(), torch.optim.AdamW)
    assert learner.fit(1).num_steps == 2


def test_training_prints_nothing(capfd) -> None:
    learner = TorchLearner(LitClassifier(), random_node_data(32, 8))
    learner.fit(1)
    learner.evaluate()
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_thread_budget_reads_the_environment(monkeypatch) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert thread_budget() == 1
    monkeypatch.setenv(THREADS_ENV, "3")
    assert thread_budget() == 3
    monkeypatch.setenv(THREADS_ENV, "0")
    assert thread_budget() is None
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(ValueError, match=THREADS_ENV):
        thread_budget()
