"""Slicer request -> SAM2 prompts, without a server (3D propagation: test_infer_volume.py)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi import HTTPException

from sam2tune.monailabel.prompts import parse_prompts


def test_2d_clicks_and_roi_map_ijk_to_xy():
    out = parse_prompts({"foreground": [[10, 20]], "background": [[3, 4]], "roi": [1, 2, 30, 40]}, (64, 48))
    p = out[-1]
    np.testing.assert_array_equal(p.points, [[10, 20], [3, 4]])
    np.testing.assert_array_equal(p.labels, [1, 0])
    np.testing.assert_array_equal(p.box, [1, 2, 30, 40])


def test_3d_clicks_group_by_slice_and_roi_prompts_middle_slice():
    out = parse_prompts(
        {"foreground": [[1, 2, 5], [3, 4, 7]], "background": [[0, 0, 5]], "roi": [0, 0, 8, 8, 2, 6]}, (16, 16, 10)
    )
    assert sorted(out) == [4, 5, 7]
    assert out[4].box is not None and len(out[4].points) == 0
    np.testing.assert_array_equal(out[5].labels, [1, 0])


def test_deepedit_style_label_key_and_slice_param():
    out = parse_prompts({"optic_cup": [[2, 3]], "slice": 4}, (8, 8, 6), label_name="optic_cup")
    np.testing.assert_array_equal(out[4].points, [[2, 3]])


@pytest.mark.parametrize(
    "request_, words",
    [
        ({"foreground": [[64, 0]]}, "outside the image"),
        ({"background": [[-1, 2]]}, "outside the image"),
        ({"foreground": "12"}, "list of [i, j]"),
        ({"foreground": [["a", 1]]}, "not numeric"),
        ({"roi": [5, 5, 2, 2]}, "empty or outside"),
        ({"roi": [1, 2, 3]}, "roi"),
    ],
)
def test_bad_requests_are_400_with_reason(request_, words):
    with pytest.raises(HTTPException) as err:
        parse_prompts(request_, (64, 48))
    assert err.value.status_code == 400 and words in err.value.detail

