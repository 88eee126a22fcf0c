"""LoadRaterMeand: binarise each rater (JPEG-safe), mean, threshold; errors name the file."""

import numpy as np
import pytest
from PIL import Image

from sam2tune.transforms import LoadRaterMeand, rater_mean


def write_raters(tmp_path, masks, ext="jpg", rgb=False):
    paths = []
    for i, m in enumerate(masks, 1):
        img = Image.fromarray((m * 255).astype(np.uint8))
        if rgb:
            img = img.convert("RGB")
        p = tmp_path / f"r_{i}.{ext}"
        img.save(p)
        paths.append(str(p))
    return paths


def three_raters():
    """Rows 0-9 marked by 3 raters, rows 10-19 by 2, rows 20-29 by 1, rows 30-39 by none (H=40, W=24)."""
    masks = []
    for k in range(3):
        m = np.zeros((40, 24))
        m[: 10 * (3 - k)] = 1
        masks.append(m)
    return masks


@pytest.mark.parametrize("rgb", [False, True])
def test_mean_and_majority(tmp_path, rgb):
    paths = write_raters(tmp_path, three_raters(), rgb=rgb)
    out = LoadRaterMeand("label", mean_key="label_mean")({"label": paths})
    lab, mean = out["label"], out["label_mean"]
    assert lab.shape == (1, 40, 24) and lab.dtype.is_floating_point
    # interior rows (away from JPEG ringing at the row-10/20/30 edges)
    np.testing.assert_allclose(mean[0, [2, 15, 25, 35], 5].numpy(), [1, 2 / 3, 1 / 3, 0], atol=1e-6)
    np.testing.assert_array_equal(lab[0, [2, 15, 25, 35], 5].numpy(), [1, 1, 0, 0])
    assert lab.meta["num_raters"] == 3
    assert set(np.unique(lab.numpy())) <= {0.0, 1.0}


def test_threshold_and_single_path(tmp_path):
    paths = write_raters(tmp_path, three_raters(), ext="png")
    strict = LoadRaterMeand("label", threshold=1.0)({"label": paths})["label"]
    assert strict[0, :, 0].sum() == 10
    one = LoadRaterMeand("label")({"label": paths[0]})["label"]
    assert one[0, :, 0].sum() == 30
    with pytest.raises(ValueError, match="threshold"):
        LoadRaterMeand("label", threshold=0.0)


def test_errors_name_the_file(tmp_path):
    paths = write_raters(tmp_path, three_raters(), ext="png")
    odd = tmp_path / "odd.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(odd)
    with pytest.raises(ValueError, match=r"odd\.png has shape"):
        rater_mean(paths + [str(odd)])
    bad = tmp_path / "r_bad.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ValueError, match=r"r_bad\.jpg"):
        LoadRaterMeand("label")({"label": [paths[0], str(bad)]})
    with pytest.raises(FileNotFoundError, match=r"r_9\.jpg"):
        LoadRaterMeand("label")({"label": [str(tmp_path / "r_9.jpg")]})
    with pytest.raises(ValueError, match="empty list"):
        rater_mean([])
