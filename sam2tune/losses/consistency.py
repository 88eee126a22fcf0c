"""Inter-slice (temporal) consistency: predictions on adjacent slices of one stack should change little."""

from __future__ import annotations

import torch
from torch.nn.modules.loss import _Loss


def inter_slice_consistency(probs: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Probabilities (B, S, H, W) -> mean squared change between adjacent slices (scalar; 0 when S == 1).

    With `target` (B, S, H, W) the change the ground truth itself shows is subtracted first, so a nodule that really
    grows or shrinks from one slice to the next is not penalised: mean((dp - dy)^2).
    """
    if probs.ndim != 4:
        raise ValueError(f"inter_slice_consistency expects (B, S, H, W), got {tuple(probs.shape)}.")
    if probs.shape[1] < 2:
        return probs.sum() * 0.0  # keeps the graph (and the device) for a single slice
    change = probs[:, 1:] - probs[:, :-1]
    if target is not None:
        target = target.to(probs.dtype)
        change = change - (target[:, 1:] - target[:, :-1])
    return change.pow(2).mean()


class InterSliceConsistencyLoss(_Loss):
    """Loss module around `inter_slice_consistency`.

    Args:
        sigmoid: apply a sigmoid to the input logits first.
        target_aware: subtract the ground-truth change between slices (see `inter_slice_consistency`).
    """

    def __init__(self, sigmoid: bool = True, target_aware: bool = False) -> None:
        super().__init__()
        self.sigmoid, self.target_aware = sigmoid, target_aware

    def forward(self, input: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:  # noqa: A002 - torch API
        """Logits or probabilities (B, S, H, W) (+ target (B, S, H, W)) -> scalar."""
        probs = torch.sigmoid(input.float()) if self.sigmoid else input.float()
        return inter_slice_consistency(probs, target if self.target_aware else None)
