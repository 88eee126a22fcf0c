"""GradientAllReduce: mean of every trainable gradient over ranks (unused parts join with zeros), rank 0's weights
broadcast at start, nothing done outside torch.distributed. Two ranks are emulated by a stand-in for
torch.distributed, so the test needs no process group (starting real gloo workers costs ~30 s of imports here)."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents
from torch import nn

import sam2tune.handlers.grad_allreduce as grad_allreduce
from sam2tune.handlers import GradientAllReduce


class _TwoRanks:
    """torch.distributed as seen from rank 1 of 2: all_reduce adds rank 0's tensors, broadcast copies rank 0's."""

    def __init__(self, peer_grads: list[torch.Tensor], rank0_params: list[torch.Tensor]) -> None:
        self.peer_grads, self.rank0_params, self.sources = list(peer_grads), list(rank0_params), []

    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return True

    def get_world_size(self) -> int:
        return 2

    def all_reduce(self, tensor: torch.Tensor) -> None:
        tensor.add_(self.peer_grads.pop(0))

    def broadcast(self, tensor: torch.Tensor, src: int) -> None:
        self.sources.append(src)
        tensor.copy_(self.rank0_params.pop(0))


def _trainer():
    net = nn.Sequential(nn.Linear(2, 1, bias=False), nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False))
    net[2].weight.requires_grad_(False)  # frozen: never part of the collective
    net[0].weight.grad = torch.tensor([[1.0, 2.0]])  # net[1] unused on this rank: no grad
    opt = torch.optim.SGD([p for p in net.parameters()], lr=0.1)
    return SimpleNamespace(network=net, optimizer=opt), net


def test_gradients_are_averaged_and_unused_parameters_join_with_zeros(monkeypatch):
    engine, net = _trainer()
    fake = _TwoRanks([torch.tensor([[3.0, 4.0]]), torch.tensor([[2.0]])], [])
    monkeypatch.setattr(grad_allreduce, "dist", fake)
    GradientAllReduce()(engine)
    assert net[0].weight.grad.tolist() == [[2.0, 3.0]]
    assert net[1].weight.grad.tolist() == [[1.0]]  # (0 + 2) / 2: this rank joined with zeros
    assert net[2].weight.grad is None and not fake.peer_grads  # frozen one skipped; both collectives ran


def test_start_broadcasts_rank0_weights(monkeypatch):
    engine, net = _trainer()
    rank0 = [torch.full_like(p, 7.0) for p in net.parameters()]
    fake = _TwoRanks([], rank0)
    monkeypatch.setattr(grad_allreduce, "dist", fake)
    GradientAllReduce.broadcast(engine)
    assert all(bool((p == 7.0).all()) for p in net.parameters()) and fake.sources == [0, 0, 0]


def test_single_process_is_a_no_op_and_attach_registers_both_events():
    engine, net = _trainer()
    GradientAllReduce()(engine)  # torch.distributed is not initialised in the test process
    GradientAllReduce.broadcast(engine)
    assert net[0].weight.grad.tolist() == [[1.0, 2.0]] and net[1].weight.grad is None
    trainer = Engine(lambda e, b: None)
    trainer.register_events(*IterationEvents)
    handler = GradientAllReduce()
    handler.attach(trainer)
    assert trainer.has_event_handler(handler, IterationEvents.BACKWARD_COMPLETED)
    assert trainer.has_event_handler(GradientAllReduce.broadcast, Events.STARTED)
