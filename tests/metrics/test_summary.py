"""score_summary: the Dice / IoU statistics every report's summary.json shares."""

from __future__ import annotations

import math

import pytest

from sam2tune.metrics import score_summary


def test_score_summary_leaves_nan_out():
    s = score_summary([0.5, math.nan, 0.9, 0.7], [0.4, math.nan, 0.8, math.nan])
    assert list(s) == ["n_scored", "mean_dice", "std_dice", "median_dice", "mean_iou"]
    assert s["n_scored"] == 3
    assert s["mean_dice"] == pytest.approx(0.7) and s["median_dice"] == pytest.approx(0.7)
    assert s["std_dice"] == pytest.approx((0.08 / 3) ** 0.5)  # population SD of 0.5, 0.7, 0.9
    assert s["mean_iou"] == pytest.approx(0.6)


def test_score_summary_without_scores_is_nan():
    s = score_summary([math.nan], iter([]))
    assert s["n_scored"] == 0 and all(math.isnan(s[k]) for k in ("mean_dice", "std_dice", "median_dice", "mean_iou"))
