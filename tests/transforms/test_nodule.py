"""Nodule crops: one sample per nodule, padding at borders, slice stacks, affine, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from sam2tune.transforms.nodule import NoduleCropd, check_crop_size, crop_with_padding


def _volume(shape=(40, 40, 10)):
    image = torch.rand(1, *shape)
    label = torch.zeros(1, *shape)
    label[0, 18:23, 10:13, 4:7] = 1  # nodule 1: centre (20, 11, 5)
    label[0, 0:3, 37:40, 8:10] = 1  # nodule 2 touches three borders: centre (1, 38, 8.5)
    affine = torch.diag(torch.tensor([0.5, 0.5, 2.0, 1.0], dtype=torch.float64))
    affine[:3, 3] = torch.tensor([10.0, 20.0, 30.0])
    return {"image": MetaTensor(image, affine=affine), "label": MetaTensor(label, affine=affine), "id": "case1"}


def test_one_sample_per_nodule_with_padding_and_affine():
    data = _volume()
    samples = NoduleCropd(crop_size=(16, 12), adjacent_slices=2)(data)
    assert len(samples) == 2 and [s["nodule"] for s in samples] == [0, 1]
    # components are numbered in scan order (x first): the border nodule at x = 0..2 comes first
    border, first = samples
    assert first["image"].shape == (5, 16, 12) and first["label"].shape == (5, 16, 12) and first["id"] == "case1"
    # stack slice k, row i, col j = volume voxel (start_x + i, start_y + j, start_z + k)
    sx, sy, sz = first["crop_start"].tolist()
    assert (sx, sy, sz) == (20 - 8, 11 - 6, 5 - 2)
    assert torch.equal(first["image"][2], data["image"][0, sx:sx + 16, sy:sy + 12, 5].as_tensor())
    assert int(first["label"].sum()) == 5 * 3 * 3
    # the border nodule is padded (not failed) and keeps all its voxels; padding is 0
    assert border["image"].shape == (5, 16, 12)
    assert int(border["label"].sum()) == int(data["label"][0, 0:3, 37:40, 8:10].sum())
    assert float(border["image"][:, :, -1].abs().sum()) == 0.0 and float(border["image"][-1].abs().sum()) == 0.0
    # crop_affine maps crop voxel (0, 0, 0) to the world position of volume voxel crop_start
    world = data["image"].affine.numpy() @ np.array([*border["crop_start"].tolist(), 1.0])
    assert np.allclose(border["crop_affine"].numpy() @ np.array([0, 0, 0, 1.0]), world)


def test_random_slice_stays_inside_the_nodule():
    crop = NoduleCropd(crop_size=16, adjacent_slices=0, random_slice=True)
    crop.set_random_state(0)
    zs = {int(crop(_volume())[1]["crop_start"][2]) for _ in range(20)}
    assert zs <= {4, 5, 6} and len(zs) > 1


def test_centres_without_label():
    data = _volume()
    del data["label"]
    data["centers"] = [[20, 11, 5]]
    (sample,) = NoduleCropd(crop_size=16, adjacent_slices=1)(data)
    assert sample["image"].shape == (3, 16, 16) and "label" not in sample and "centers" not in sample


def test_bad_input_messages():
    empty = _volume()
    empty["label"] = empty["label"] * 0
    with pytest.raises(ValueError, match="no nodule.*case1|case1.*no nodule"):
        NoduleCropd(crop_size=16)(empty)
    with pytest.raises(ValueError, match="crop_size"):
        NoduleCropd(crop_size=(96,))
    with pytest.raises(ValueError, match="crop_size"):
        check_crop_size([0, 96])
    with pytest.raises(ValueError, match="adjacent_slices"):
        NoduleCropd(adjacent_slices=-1)
    outside = _volume()
    del outside["label"]
    outside["centers"] = [[100, 5, 5]]
    with pytest.raises(ValueError, match="outside the volume"):
        NoduleCropd(crop_size=16)(outside)


def test_crop_entirely_outside_is_padding():
    out = crop_with_padding(torch.ones(1, 4, 4, 4), [10, 0, 0], [2, 2, 2], pad_value=-1.0)
    assert out.shape == (1, 2, 2, 2) and float(out.sum()) == -8.0
