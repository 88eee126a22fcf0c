"""Distributed helpers: rank-0 checks and DDP unwrapping, so handlers work alone and under torchrun."""

from __future__ import annotations

import torch.distributed as dist
from torch import nn


def is_rank0() -> bool:
    """True outside torch.distributed or on global rank 0."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def unwrap(network: nn.Module) -> nn.Module:
    """Return the module inside DistributedDataParallel / DataParallel wrappers."""
    while hasattr(network, "module") and isinstance(network, nn.parallel.DistributedDataParallel | nn.DataParallel):
        network = network.module
    return network
