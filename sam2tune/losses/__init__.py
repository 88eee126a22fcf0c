"""Losses: inter-slice consistency, the BCE + Dice (+ consistency) loss on slice stacks, the loss over correction rounds."""

from sam2tune.losses.combined import SliceStackLoss
from sam2tune.losses.consistency import InterSliceConsistencyLoss, inter_slice_consistency
from sam2tune.losses.rounds import CorrectionRoundsLoss

__all__ = ["CorrectionRoundsLoss", "InterSliceConsistencyLoss", "SliceStackLoss", "inter_slice_consistency"]
