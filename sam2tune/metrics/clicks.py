"""Clicks-to-accuracy: NoC@85/90, NoF and Dice/IoU after k corrective clicks, from per-object curves.

Conventions (SAM, RITM / SimpleClick, SAM-Med2D): the curves hold one row per object and one column per step,
column 0 = after the first prompt (the bundle's box or click), column k = after k corrective clicks. NoC@t is the
number of corrective clicks an object needs to reach IoU >= t (0 when the first prompt already does), counting
``max_clicks`` for an object that never gets there; NoF@t counts those objects.
"""

from __future__ import annotations

import numpy as np

NOC_THRESHOLDS = (0.85, 0.90)


def clicks_to_reach(ious: np.ndarray, threshold: float, max_clicks: int | None = None) -> np.ndarray:
    """Per-object IoU curves (N, K + 1) -> corrective clicks to reach ``threshold`` (N,), ``max_clicks`` if never.

    Args:
        ious: IoU after the first prompt (column 0) and after each of K corrective clicks.
        threshold: IoU to reach, e.g. 0.85.
        max_clicks: the count given to objects that never reach it (default K).

    Returns:
        int array (N,).
    """
    ious = np.asarray(ious, dtype=np.float64)
    if ious.ndim != 2:
        raise ValueError(f"ious must be (objects, steps), got shape {ious.shape}.")
    cap = ious.shape[1] - 1 if max_clicks is None else int(max_clicks)
    hit = ious >= threshold
    return np.where(hit.any(1), hit.argmax(1), cap).astype(np.int64)


def click_summary(ious: np.ndarray, dices: np.ndarray, max_clicks: int | None = None) -> dict:
    """Per-object IoU and Dice curves (N, K + 1) -> the summary.json fields of the click protocol.

    Returns:
        {"objects", "max_clicks", "dice_at_clicks", "iou_at_clicks" (means over objects, K + 1 values),
        "noc_85", "noc_90" (mean clicks), "nof_85", "nof_90" (objects never reaching the threshold)}.
    """
    ious, dices = np.asarray(ious, np.float64), np.asarray(dices, np.float64)
    if ious.shape != dices.shape or ious.ndim != 2 or not len(ious):
        raise ValueError(
            f"ious and dices must be equal, non-empty (objects, steps) arrays, got {ious.shape}, {dices.shape}."
        )
    cap = ious.shape[1] - 1 if max_clicks is None else int(max_clicks)
    out: dict = {"objects": int(len(ious)), "max_clicks": cap,
                 "dice_at_clicks": [round(float(v), 6) for v in dices.mean(0)],
                 "iou_at_clicks": [round(float(v), 6) for v in ious.mean(0)]}
    for t in NOC_THRESHOLDS:
        noc = clicks_to_reach(ious, t, cap)
        tag = int(round(t * 100))
        out[f"noc_{tag}"] = round(float(noc.mean()), 4)
        out[f"nof_{tag}"] = int((ious.max(1) < t).sum())
    return out


__all__ = ["NOC_THRESHOLDS", "click_summary", "clicks_to_reach"]
