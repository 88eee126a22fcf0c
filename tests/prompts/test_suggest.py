"""The next-click suggestion: the most uncertain region's deepest point, label flipping the prediction there."""

import numpy as np

from sam2tune.prompts import suggest_click, uncertainty_map


def test_sure_model_suggests_nothing():
    p = np.zeros((20, 20), np.float32)
    p[5:10, 5:10] = 1.0
    assert suggest_click(p) is None


def test_suggests_the_centre_of_the_largest_uncertain_region():
    p = np.zeros((40, 40), np.float32)
    p[2:5, 2:5] = 0.45  # small uncertain patch
    p[20:31, 10:21] = 0.4  # larger uncertain patch, predicted background
    s = suggest_click(p)
    assert s.point == [15, 25] and s.positive  # flips background -> positive
    assert s.as_dict()["label"] == "positive" and 0.79 < s.score <= 0.81


def test_uncertain_foreground_gets_a_negative_suggestion():
    p = np.full((16, 16), 0.0, np.float32)
    p[4:12, 4:12] = 0.6
    assert not suggest_click(p).positive


def test_mc_samples_use_their_spread():
    a, b = np.zeros((10, 10), np.float32), np.zeros((10, 10), np.float32)
    b[2:8, 2:8] = 1.0  # samples disagree on a 6x6 square
    u = uncertainty_map(np.stack([a, b]))
    assert u[5, 5] == 1.0 and u[0, 0] == 0.0
    assert suggest_click(np.stack([a, b])).point in ([4, 4], [5, 5], [4, 5], [5, 4])
