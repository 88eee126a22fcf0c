"""LoadJPEGd / read_image: orientation (rows = height), channels, scaling, errors naming the file."""

import numpy as np
import pytest
from monai.data import MetaTensor
from PIL import Image

from sam2tune.transforms import LoadJPEGd, read_image


@pytest.fixture()
def asymmetric(tmp_path):
    """A 20 x 40 (H x W) RGB picture with one bright block near the top-right corner."""
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[2:6, 30:38] = (255, 128, 0)
    path = tmp_path / "asym.png"  # PNG: lossless, so values can be compared exactly
    Image.fromarray(arr).save(path)
    return path, arr


def test_orientation_matches_pil(asymmetric):
    path, arr = asymmetric
    out = LoadJPEGd("image")({"image": str(path)})["image"]
    assert isinstance(out, MetaTensor) and out.shape == (3, 20, 40) and out.dtype.is_floating_point
    np.testing.assert_allclose(out.numpy(), np.moveaxis(arr, -1, 0) / 255.0, atol=1e-6)
    assert out.meta["filename_or_obj"] == str(path)
    assert list(out.meta["spatial_shape"]) == [20, 40]


def test_jpeg_orientation_and_range(tmp_path):
    arr = np.zeros((30, 50), np.uint8)
    arr[:10, 35:] = 255
    path = tmp_path / "a.jpg"
    Image.fromarray(arr).save(path)
    out = read_image(path)
    assert out.shape == (3, 30, 50) and 0.0 <= out.min() and out.max() <= 1.0
    bright = np.argwhere(out[0] > 0.5)
    assert bright[:, 0].max() < 12 and bright[:, 1].min() > 32  # block stays top-right
    np.testing.assert_array_equal(out[0], out[1])  # grey file repeated to RGB


def test_grey_mode_and_unscaled(asymmetric):
    path, _ = asymmetric
    out = read_image(path, mode="L", scale=False)
    assert out.shape == (1, 20, 40) and out.max() > 1.0


def test_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        LoadJPEGd("image")({"image": str(missing)})
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(ValueError, match=r"Cannot read image file .*broken\.jpg"):
        LoadJPEGd("image")({"image": str(bad)})
    with pytest.raises(TypeError, match="file path"):
        LoadJPEGd("image")({"image": np.zeros((3, 4, 4))})
    with pytest.raises(ValueError, match="mode"):
        LoadJPEGd("image", mode="CMYK")
