"""Losses: inter-slice consistency and the BCE + Dice (+ consistency) loss on slice stacks."""

from sam2tune.losses.combined import SliceStackLoss
from sam2tune.losses.consistency import InterSliceConsistencyLoss, inter_slice_consistency

__all__ = ["InterSliceConsistencyLoss", "SliceStackLoss", "inter_slice_consistency"]
