"""Per-organ Dice and IoU of 3D label maps at three levels: per slice, per volume, and global (voxels pooled)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def dice_iou(intersection: float, pred_sum: float, label_sum: float) -> tuple[float, float]:
    """Voxel counts -> (Dice, IoU); NaN when both masks are empty (the organ is absent and not predicted)."""
    union = pred_sum + label_sum - intersection
    if pred_sum + label_sum == 0:
        return float("nan"), float("nan")
    return 2.0 * intersection / (pred_sum + label_sum), intersection / union


def organ_counts(pred: np.ndarray, label: np.ndarray, organ_ids: Sequence[int]) -> dict[int, tuple[int, int, int]]:
    """Label maps (D, H, W) -> {organ: (intersection, predicted voxels, labelled voxels)}."""
    if pred.shape != label.shape:
        raise ValueError(f"Prediction shape {pred.shape} differs from label shape {label.shape}.")
    out = {}
    for organ in organ_ids:
        p, g = pred == organ, label == organ
        out[int(organ)] = (int(np.logical_and(p, g).sum()), int(p.sum()), int(g.sum()))
    return out


def slice_scores(pred: np.ndarray, label: np.ndarray, organ_ids: Sequence[int]) -> list[dict]:
    """Label maps (D, H, W) -> per-slice rows {slice, organ, dice, iou, label_voxels, pred_voxels}.

    One row per organ and slice where the organ is labelled or predicted.
    """
    rows = []
    for organ in organ_ids:
        p, g = (pred == organ).reshape(pred.shape[0], -1), (label == organ).reshape(label.shape[0], -1)
        inter, ps, gs = (p & g).sum(1), p.sum(1), g.sum(1)
        for k in np.nonzero((ps + gs) > 0)[0]:
            d, i = dice_iou(inter[k], ps[k], gs[k])
            rows.append({"slice": int(k), "organ": int(organ), "dice": d, "iou": i, "label_voxels": int(gs[k]),
                         "pred_voxels": int(ps[k])})
    return rows


def global_scores(counts: Sequence[dict[int, tuple[int, int, int]]]) -> dict[int, tuple[float, float]]:
    """organ_counts of several volumes -> {organ: (global Dice, global IoU)} from voxel counts pooled over volumes."""
    pooled: dict[int, np.ndarray] = {}
    for c in counts:
        for organ, v in c.items():
            pooled[organ] = pooled.get(organ, np.zeros(3)) + np.asarray(v, np.float64)
    return {organ: dice_iou(*v) for organ, v in pooled.items()}


__all__ = ["dice_iou", "global_scores", "organ_counts", "slice_scores"]
