"""Bottleneck adapters after each Hiera block (Houlsby-style), attached without changing the base's key names."""

from __future__ import annotations

import torch
from torch import nn

ADAPTER_PREFIX = "adapter"


class BottleneckAdapter(nn.Module):
    """Houlsby-style bottleneck on the last dim: ``up(act(down(x)))``, the residual update a block's output gets.

    ``up`` starts at zero, so a block with a fresh adapter computes exactly what it did before (identity at step 0).

    Args:
        dim: width of the features the adapter sees (the Hiera block's ``dim_out``).
        bottleneck: width of the hidden layer.
    """

    def __init__(self, dim: int, bottleneck: int = 32) -> None:
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.act = nn.GELU()
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the residual update of ``x``.

        Args:
            x: features (..., dim).

        Returns:
            The update (..., dim); the caller adds it to ``x``.
        """
        return self.up(self.act(self.down(x)))


def _adapter_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    # A forward hook keeps the base block's parameter names intact, so official checkpoints still load.
    return output + module.adapter(output)


def add_hiera_adapters(trunk: nn.Module, bottleneck: int = 32) -> int:
    """Attach a BottleneckAdapter after every block of a Hiera trunk, in place (idempotent).

    The adapter is a child module ``block.adapter`` applied by a forward hook, so the block's own parameter names
    (and official checkpoints) are unchanged; it is created on the block's device and dtype.

    Args:
        trunk: a Hiera trunk (``sam.image_encoder.trunk``) with a ``blocks`` list.
        bottleneck: width of each adapter's hidden layer.

    Returns:
        How many adapters were added (0 when every block already has one).
    """
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
    """Find the bottleneck width of the Hiera adapters a state_dict holds.

    Args:
        state_dict: a SAM2Segmenter (or SAM2Base) state_dict.

    Returns:
        The width of the first ``...trunk.blocks.*.adapter.down.weight`` found, 0 when there is none.
    """
    for k, v in state_dict.items():
        if ".trunk.blocks." in k and k.endswith(f"{ADAPTER_PREFIX}.down.weight"):
            return int(v.shape[0])
    return 0
