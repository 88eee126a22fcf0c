"""Gradient averaging over torchrun ranks for trainers whose network forward DistributedDataParallel never sees."""

from __future__ import annotations

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents

from sam2tune.utils.dist import unwrap


def _distributed() -> bool:
    """True inside an initialised torch.distributed group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class GradientAllReduce:
    """Average gradients over torchrun ranks before the optimizer step (no-op outside torch.distributed).

    The 3D trainer calls SAM2's tracking functions directly rather than the network's forward, so a
    DistributedDataParallel wrapper would never see the forward; this handler does its gradient sync instead.
    At start it also broadcasts rank 0's parameters (ranks are seeded differently, so random parts differ). Attach it
    before GradientClipping.
    """

    def attach(self, engine: Engine) -> None:
        """Broadcast parameters when training starts; all-reduce on BACKWARD_COMPLETED (before optimizer.step).

        Args:
            engine: the trainer (needs ``network`` and ``optimizer``, as MONAI's SupervisedTrainer has).
        """
        engine.add_event_handler(Events.STARTED, self.broadcast)
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    @staticmethod
    def broadcast(engine: Engine) -> None:
        """Copy rank 0's parameters to every rank (no-op outside torch.distributed).

        Args:
            engine: the trainer whose ``network`` is synchronised.
        """
        if _distributed():
            with torch.no_grad():
                for p in unwrap(engine.network).parameters():
                    dist.broadcast(p.data, src=0)

    def __call__(self, engine: Engine) -> None:
        """All-reduce (mean) every trainable parameter's gradient; a parameter without one joins with zeros.

        Args:
            engine: the trainer whose ``optimizer`` parameter groups hold the parameters.
        """
        if not _distributed():
            return
        world = dist.get_world_size()
        for group in engine.optimizer.param_groups:
            for p in group["params"]:
                if p.requires_grad:
                    if p.grad is None:  # a part unused on this rank still joins the collective
                        p.grad = torch.zeros_like(p)
                    dist.all_reduce(p.grad)
                    p.grad.div_(world)


__all__ = ["GradientAllReduce"]
