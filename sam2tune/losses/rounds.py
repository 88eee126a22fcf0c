"""A loss over every correction round, as SAM / SAM2 train their interactive loop."""

from __future__ import annotations

import torch
from torch import nn


class CorrectionRoundsLoss(nn.Module):
    """Mean of ``loss`` over the rounds of an interactive prediction.

    Args:
        loss: a segmentation loss taking (logits (B, 1, H, W), target (B, 1, H, W)), e.g. MONAI's DiceCELoss.

    Forward: logits (B, R + 1, H, W) from ``sam2tune.engines.InteractiveInferer`` and target (B, 1, H, W) -> scalar;
    with one round this is exactly ``loss(logits, target)``.
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, R + 1, H, W), (B, 1, H, W) -> mean over rounds of loss(round, target)."""
        if pred.ndim != 4 or target.shape[1] != 1:
            raise ValueError(f"Expected rounds (B, R+1, H, W) and a (B, 1, H, W) target, got {tuple(pred.shape)}, {tuple(target.shape)}.")
        return torch.stack([self.loss(pred[:, r : r + 1], target) for r in range(pred.shape[1])]).mean()


__all__ = ["CorrectionRoundsLoss"]
