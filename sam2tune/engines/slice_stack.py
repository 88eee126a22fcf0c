"""Run a 2D network on stacks of adjacent slices: (B, S, H, W) -> every slice as a 1-channel image -> (B, S, H, W)."""

from __future__ import annotations

import torch
from monai.inferers import Inferer
from torch import nn


def run_slice_stack(network: nn.Module, inputs: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """(B, S, H, W) stacks -> network on (B*S, 1, H, W) (per-sample prompts repeated S times) -> (B, S, H, W) logits."""
    if inputs.ndim != 4:
        raise ValueError(f"Slice stacks must be (B, S, H, W), got shape {tuple(inputs.shape)}.")
    b, s, h, w = inputs.shape
    # Prompts given per sample (first dim B) apply to every slice of that sample.
    kwargs = {k: v.repeat_interleave(s, 0) if torch.is_tensor(v) and v.shape[:1] == (b,) else v for k, v in kwargs.items()}
    out = network(inputs.reshape(b * s, 1, h, w), *args, **kwargs)
    return out[:, 0].reshape(b, s, *out.shape[-2:])


class SliceStackInferer(Inferer):
    """MONAI inferer for slice stacks: the engine's network sees single slices, the loss sees the stack."""

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args, label: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """(B, S, H, W) -> (B, S, H, W) logits (the network's first output channel); ``label`` (from
        PromptPrepareBatch(pass_label=True), for the interactive inferers) is not used."""
        return run_slice_stack(network, inputs, *args, **kwargs)
