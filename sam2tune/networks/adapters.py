"""Bottleneck adapters after each Hiera block (Houlsby-style), attached without changing the base's key names."""

from __future__ import annotations

import torch
from torch import nn

ADAPTER_PREFIX = "adapter"


class BottleneckAdapter(nn.Module):
    """x -> x + up(act(down(x))) on the last dim; `up` starts at zero so the wrapped block is unchanged at step 0."""

    def __init__(self, dim: int, bottleneck: int = 32) -> None:
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.act = nn.GELU()
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., dim) -> (..., dim) residual update."""
        return self.up(self.act(self.down(x)))


def _adapter_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    # A forward hook keeps the base block's parameter names intact, so official checkpoints still load.
    return output + module.adapter(output)


def add_hiera_adapters(trunk: nn.Module, bottleneck: int = 32) -> int:
    """Attach a BottleneckAdapter after every block of a Hiera trunk (idempotent); return how many were added."""
    added = 0
    for block in trunk.blocks:
        if hasattr(block, ADAPTER_PREFIX):
            continue
        ref = next(block.parameters())
        block.adapter = BottleneckAdapter(block.dim_out, bottleneck).to(device=ref.device, dtype=ref.dtype)
        block.register_forward_hook(_adapter_hook)
        added += 1
    return added


def adapter_bottleneck_in(state_dict: dict[str, torch.Tensor]) -> int:
    """Return the bottleneck width of Hiera adapters found in a state_dict (0 if none)."""
    for k, v in state_dict.items():
        if ".trunk.blocks." in k and k.endswith(f"{ADAPTER_PREFIX}.down.weight"):
            return int(v.shape[0])
    return 0
