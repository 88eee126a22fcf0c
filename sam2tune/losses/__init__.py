"""Losses: inter-slice consistency, the BCE + Dice (+ consistency) loss on slice stacks, the loss over correction
rounds, SAM2's propagation (video-training) loss for tracked slice windows."""

from sam2tune.losses.combined import SliceStackLoss
from sam2tune.losses.consistency import InterSliceConsistencyLoss, inter_slice_consistency
from sam2tune.losses.propagation import PropagationLoss
from sam2tune.losses.rounds import CorrectionRoundsLoss

__all__ = [
    "CorrectionRoundsLoss",
    "InterSliceConsistencyLoss",
    "PropagationLoss",
    "SliceStackLoss",
    "inter_slice_consistency",
]
