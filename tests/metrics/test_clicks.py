"""NoC / NoF on hand-made click curves."""

import numpy as np
import pytest

from sam2tune.metrics.clicks import click_summary, clicks_to_reach

CURVES = np.array([
    [0.95, 0.96, 0.97, 0.97],  # the first prompt suffices: 0 clicks
    [0.50, 0.80, 0.86, 0.91],  # 0.85 after 2 clicks, 0.90 after 3
    [0.10, 0.20, 0.30, 0.40],  # never: counts max_clicks (3)
])


def test_clicks_to_reach():
    assert clicks_to_reach(CURVES, 0.85).tolist() == [0, 2, 3]
    assert clicks_to_reach(CURVES, 0.90).tolist() == [0, 3, 3]
    assert clicks_to_reach(CURVES, 0.90, max_clicks=20).tolist() == [0, 3, 20]


def test_summary_fields():
    s = click_summary(CURVES, CURVES * 0.5)
    assert s["noc_85"] == pytest.approx(5 / 3, abs=1e-4) and s["noc_90"] == pytest.approx(2.0)
    assert s["nof_85"] == 1 and s["nof_90"] == 1  # object 2 reaches 0.91 at the last click
    assert s["iou_at_clicks"][0] == pytest.approx(np.mean([0.95, 0.5, 0.1]), abs=1e-6)
    assert s["dice_at_clicks"][3] == pytest.approx(0.5 * np.mean([0.97, 0.91, 0.40]), abs=1e-6)
    assert len(s["dice_at_clicks"]) == 4 and s["objects"] == 3


def test_bad_shapes_refused():
    with pytest.raises(ValueError):
        click_summary(CURVES, CURVES[:2])
    with pytest.raises(ValueError):
        clicks_to_reach(np.zeros(3), 0.85)
