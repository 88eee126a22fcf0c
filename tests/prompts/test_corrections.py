"""The corrective-click rule on hand-made masks: where the click must land, and its label."""

import numpy as np
import pytest
import torch

from sam2tune.prompts import error_click, error_slice, sample_error_clicks


def square(shape, r0, r1, c0, c1):
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


def test_no_error_gives_no_click():
    t = square((20, 20), 5, 10, 5, 10)
    assert error_click(t, t) is None


def test_missed_region_gives_positive_click_at_its_centre():
    target = square((32, 32), 4, 13, 4, 13)  # 9x9 object, centre (8, 8)
    pred = np.zeros_like(target)
    xy, label = error_click(pred, target)
    assert label == 1.0
    np.testing.assert_array_equal(xy, [8, 8])


def test_false_positive_gives_negative_click_inside_it():
    target = square((32, 32), 2, 6, 2, 6)
    pred = target | square((32, 32), 20, 31, 10, 21)  # 11x11 false positive, larger than any miss
    xy, label = error_click(pred, target)
    assert label == 0.0
    np.testing.assert_array_equal(xy, [15, 25])  # (col, row) of the false-positive square's centre


def test_largest_region_wins_over_a_deeper_looking_smaller_one():
    target = square((40, 40), 0, 5, 0, 30) | square((40, 40), 30, 37, 30, 37)  # 5x30 strip (150 px) + 7x7 (49 px)
    xy, label = error_click(np.zeros_like(target), target)
    assert label == 1.0
    assert 0 <= xy[1] < 5 and 0 <= xy[0] < 30  # on the strip, the larger miss


def test_click_is_inside_a_non_convex_region():
    target = square((30, 30), 2, 28, 2, 8) | square((30, 30), 22, 28, 2, 28)  # an L
    xy, label = error_click(np.zeros_like(target), target)
    assert target[int(xy[1]), int(xy[0])]


def test_error_slice_is_the_slice_with_most_wrong_pixels():
    target = np.zeros((5, 10, 10), bool)
    target[1, 2:4, 2:4] = True  # 4 px
    target[3, 1:8, 1:8] = True  # 49 px
    assert error_slice(np.zeros_like(target), target) == 3
    assert error_slice(target, target) is None


def test_batched_center_matches_error_click_and_pads_perfect_samples():
    target = square((16, 16), 3, 9, 3, 9)
    pred = torch.from_numpy(np.stack([np.zeros_like(target), target]))[:, None]
    pts, labels = sample_error_clicks(pred, torch.from_numpy(np.stack([target, target]))[:, None], mode="center")
    xy, lab = error_click(np.zeros_like(target), target)
    np.testing.assert_array_equal(pts[0, 0].numpy(), xy)
    assert labels.tolist() == [[int(lab)], [-1]]


@pytest.mark.parametrize("seed", range(3))
def test_uniform_clicks_land_in_the_error_with_the_right_label(seed):
    torch.manual_seed(seed)
    target = torch.zeros(4, 1, 24, 24, dtype=torch.bool)
    target[:, :, 4:12, 4:12] = True
    pred = torch.zeros_like(target)
    pred[2:, :, 14:22, 14:22] = True  # samples 2, 3: a false positive as well as the miss
    pred[2:, :, 4:12, 4:12] = True  # ... and the object found: only the false positive is wrong
    pts, labels = sample_error_clicks(pred, target, mode="uniform")
    for b in range(4):
        x, y = pts[b, 0].long().tolist()
        wrong = bool(target[b, 0, y, x]) != bool(pred[b, 0, y, x])
        assert wrong
        assert labels[b, 0].item() == int(target[b, 0, y, x])


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="same|one shape"):
        error_click(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="click mode"):
        sample_error_clicks(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), mode="median")
