"""A loss over every correction round, as SAM / SAM2 train their interactive loop."""

from __future__ import annotations

import torch
from torch import nn


class CorrectionRoundsLoss(nn.Module):
    """Mean of ``loss`` over the rounds of an interactive prediction.

    Args:
        loss: a segmentation loss taking (logits (B, 1, H, W), target (B, 1, H, W)), e.g. MONAI's DiceCELoss.

    Forward: logits (B, R + 1, H, W) from ``sam2tune.engines.InteractiveInferer`` and target (B, 1, H, W) -> scalar;
    with one round this is exactly ``loss(logits, target)``. Slice stacks: logits (B, R + 1, S, H, W) and target
    (B, S, H, W) (or logits (B, S, H, W) without rounds), for a stack loss such as ``SliceStackLoss``.
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, R + 1, H, W), (B, 1, H, W) [or (B, R + 1, S, H, W), (B, S, H, W)] -> mean over rounds of
        loss(round, target)."""
        if pred.ndim == target.ndim + 1:  # slice stacks with a rounds axis
            return torch.stack([self.loss(pred[:, r], target) for r in range(pred.shape[1])]).mean()
        if pred.ndim == target.ndim and (pred.shape[1] == 1 or target.shape[1] == 1):
            if pred.shape[1] == 1 or target.shape[1] != 1:
                return self.loss(pred, target)
            return torch.stack([self.loss(pred[:, r : r + 1], target) for r in range(pred.shape[1])]).mean()
        if pred.shape == target.shape:  # slice stacks without corrections (validation-style output)
            return self.loss(pred, target)
        raise ValueError(f"Expected rounds (B, R+1, H, W) with a (B, 1, H, W) target, or (B, R+1, S, H, W) with a "
                         f"(B, S, H, W) target; got {tuple(pred.shape)} and {tuple(target.shape)}.")


__all__ = ["CorrectionRoundsLoss"]
