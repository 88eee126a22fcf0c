"""One box and click rule: the 3D per-slice prompts equal the 2D bundles' simulated prompts for the same mask."""

import numpy as np
import pytest
import torch

from sam2tune.prompts import mask_to_box, object_prompt, sample_points
from sam2tune.transforms import SimulatePromptsd


def blob() -> np.ndarray:
    yy, xx = np.mgrid[:40, :50]
    return (((yy - 17) / 9.0) ** 2 + ((xx - 30) / 13.0) ** 2 <= 1.0) | ((yy > 30) & (xx > 5) & (xx < 12))


def test_3d_prompt_box_and_click_equal_the_2d_transform():
    mask = blob()
    d = SimulatePromptsd(keys="label", mode="box+points", box_jitter=0.0, center_points=True, num_pos=1, num_neg=0)(
        {"label": torch.from_numpy(mask[None].astype(np.float32))}
    )
    p = object_prompt(mask, 4, "box+points")
    np.testing.assert_array_equal(np.asarray(p.box, np.float32), np.asarray(d["box"], np.float32))
    np.testing.assert_array_equal(np.asarray(p.points, np.float32)[0], np.asarray(d["point_coords"], np.float32)[0])
    assert p.slice == 4 and list(p.point_labels) == [1]


def test_box_is_tight_and_inclusive():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:9] = True
    assert object_prompt(mask, 0).box == mask_to_box(mask).tolist() == [3.0, 2.0, 8.0, 4.0]


def test_click_is_the_deepest_pixel_not_the_median():
    mask = blob()
    p = object_prompt(mask, 0, "points")
    coords, _ = sample_points(mask, 1, 0, center=True)
    np.testing.assert_array_equal(p.points[0], coords[0])
    assert mask[int(p.points[0][1]), int(p.points[0][0])]


def test_empty_mask_and_unknown_mode_are_refused():
    with pytest.raises(ValueError, match="empty"):
        object_prompt(np.zeros((5, 5)), 2)
    with pytest.raises(ValueError, match="prompt mode"):
        object_prompt(blob(), 0, "scribble")
