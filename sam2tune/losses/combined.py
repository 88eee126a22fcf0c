"""BCE + Dice (MONAI DiceCELoss) over each slice stack as one volume, + inter-slice consistency, weighted."""

from __future__ import annotations

import torch
from monai.losses import DiceCELoss
from torch.nn.modules.loss import _Loss

from sam2tune.losses.consistency import InterSliceConsistencyLoss


class SliceStackLoss(_Loss):
    """Weighted BCE + Dice + inter-slice consistency for (B, S, H, W) logits against (B, S, H, W) binary labels.

    BCE and Dice come from MONAI's DiceCELoss (sigmoid), computed on each stack as one (1, S, H, W) volume, so the
    slices next to a nodule that hold no nodule do not get a Dice of their own (which would be undefined).

    Args:
        lambda_bce: weight of binary cross-entropy.
        lambda_dice: weight of soft Dice (0 = BCE only).
        lambda_consistency: weight of the inter-slice consistency term (0 = off).
        target_aware: consistency relative to the ground truth's own change between slices.
    """

    def __init__(
        self,
        lambda_bce: float = 1.0,
        lambda_dice: float = 1.0,
        lambda_consistency: float = 0.0,
        target_aware: bool = False,
    ) -> None:
        super().__init__()
        weights = (("lambda_bce", lambda_bce), ("lambda_dice", lambda_dice), ("lambda_consistency", lambda_consistency))
        for name, v in weights:
            if v < 0:
                raise ValueError(f"{name} must be >= 0, got {v}.")
        if lambda_bce == 0 and lambda_dice == 0:
            raise ValueError("lambda_bce and lambda_dice are both 0: nothing would fit the labels (loss_weights).")
        self.lambda_consistency = float(lambda_consistency)
        self.dice_ce = DiceCELoss(sigmoid=True, lambda_dice=float(lambda_dice), lambda_ce=float(lambda_bce))
        self.consistency = InterSliceConsistencyLoss(sigmoid=True, target_aware=target_aware)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: A002 - torch API
        """Logits (B, S, H, W), target (B, S, H, W) -> scalar."""
        if input.shape != target.shape:
            raise ValueError(f"Prediction {tuple(input.shape)} and label {tuple(target.shape)} stacks differ in shape.")
        loss = self.dice_ce(input.float().unsqueeze(1), target.float().unsqueeze(1))
        if self.lambda_consistency:
            loss = loss + self.lambda_consistency * self.consistency(input, target)
        return loss
