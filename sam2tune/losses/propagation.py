"""SAM2's video-training loss for slice windows tracked through SAM2's memory (the 3D bundles' training loss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import nn


def _candidate_loss(dice: DiceLoss, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dice and BCE per candidate: logits (N, K, H, W), target (N, H, W) -> ((N, K) Dice, (N, K) BCE)."""
    tg = target[:, None].expand_as(logits)
    d = dice(logits.flatten(0, 1)[:, None], tg.flatten(0, 1)[:, None]).reshape(logits.shape[:2])
    bce = F.binary_cross_entropy_with_logits(logits, tg, reduction="none").mean((-2, -1))
    return d, bce


class PropagationLoss(nn.Module):
    """SAM2's video-training loss on the slices where the object is present.

    Dice + BCE on the best of SAM2's candidate masks (min over candidates, as SAM2 trains its multimask output), L1
    between predicted and actual IoU of every candidate; plus BCE on the object-score logits of every slice.

    Why the candidates: on tracking frames SAM2 outputs 3 masks and keeps the one its IoU head rates best. Training
    only that mask leaves the IoU head untrained, so the choice stays arbitrary and the chosen token changes from
    slice to slice; without candidates in ``pred`` the chosen mask alone is trained.

    Args:
        dice_weight: weight of the Dice term.
        bce_weight: weight of the mask BCE term.
        object_weight: weight of the object-score BCE (present / absent per slice).
        iou_weight: weight of the IoU-prediction L1 term (used when ``pred`` holds "ious"; 0 = off).
    """

    def __init__(self, dice_weight: float = 1.0, bce_weight: float = 1.0, object_weight: float = 1.0,
                 iou_weight: float = 1.0) -> None:
        super().__init__()
        self.dice_weight, self.bce_weight = dice_weight, bce_weight
        self.object_weight, self.iou_weight = object_weight, iou_weight
        self.dice = DiceLoss(sigmoid=True, reduction="none")

    def forward(self, pred: dict, target: torch.Tensor) -> torch.Tensor:
        """Tracker output + binary targets -> scalar loss.

        Args:
            pred: {"logits": (O, T, H, W), "object_scores": (O, T)} and optionally "candidates" (O, T, K, H, W) and
                "ious" (O, T, K), as ``SliceWindowInferer`` returns; with corrective clicks also "rounds", a list of
                such dicts.
            target: (O, T, H, W) binary masks, one per object and window slice.

        Returns:
            The loss; with "rounds" in ``pred`` the mean of the loss over the rounds.
        """
        if "rounds" in pred:
            return torch.stack([self.forward(r, target) for r in pred["rounds"]]).mean()
        scores = pred["object_scores"].float()
        present = target.flatten(2).amax(-1) > 0  # (O, T)
        loss = self.object_weight * F.binary_cross_entropy_with_logits(scores, present.float())
        if not present.any():
            return loss
        tg = target[present].float()
        # masks of absent-predicted objects are -1024 (no gradient); clamping keeps the loss value readable
        if "candidates" in pred:
            lg = pred["candidates"][present].float().clamp(-20, 20)  # (N, K, H, W)
        else:
            lg = pred["logits"][present].float().clamp(-20, 20)[:, None]
        d, bce = _candidate_loss(self.dice, lg, tg)
        loss = loss + (self.dice_weight * d + self.bce_weight * bce).min(1).values.mean()
        if "ious" in pred and self.iou_weight:
            with torch.no_grad():
                hit = (lg > 0).float()
                inter = (hit * tg[:, None]).flatten(2).sum(-1)
                union = (hit + tg[:, None]).clamp(max=1).flatten(2).sum(-1)
                actual = inter / union.clamp(min=1)
            loss = loss + self.iou_weight * F.l1_loss(pred["ious"][present].float(), actual)
        return loss


__all__ = ["PropagationLoss"]
