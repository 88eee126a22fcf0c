"""Summary statistics of per-item scores, the same in every evaluation report's summary.json."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def _finite(values: Iterable[float]) -> np.ndarray:
    v = np.array(list(values), dtype=float)
    return v[~np.isnan(v)]


def score_summary(dice: Iterable[float], iou: Iterable[float]) -> dict[str, float | int]:
    """Per-item Dice and IoU -> their summary, NaN scores (items with an empty ground truth) left out.

    Args:
        dice: one Dice per item (NaN where it is undefined).
        iou: one IoU per item (NaN where it is undefined).

    Returns:
        ``{"n_scored", "mean_dice", "std_dice", "median_dice", "mean_iou"}`` in that order: ``n_scored`` counts the
        non-NaN Dice values, ``std_dice`` is the population SD; each statistic is NaN when no score is left.
    """
    d, j = _finite(dice), _finite(iou)
    return {
        "n_scored": int(d.size),
        "mean_dice": float(d.mean()) if d.size else math.nan,
        "std_dice": float(d.std()) if d.size else math.nan,
        "median_dice": float(np.median(d)) if d.size else math.nan,
        "mean_iou": float(j.mean()) if j.size else math.nan,
    }


__all__ = ["score_summary"]
