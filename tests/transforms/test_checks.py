"""CheckFinited: NaN / inf voxels are refused with the case, file and fix named, or replaced by fill_value."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

from sam2tune.transforms import CheckFinited
from sam2tune.transforms.checks import describe_case


def _case():
    image = MetaTensor(torch.rand(1, 6, 6, 4), meta={"filename_or_obj": "/data/imagesTr/lung_007.nii.gz"})
    image[0, 1, 2, 3] = float("nan")
    image[0, 4, 4, 0] = float("-inf")
    return {"image": image, "label": torch.zeros(1, 6, 6, 4), "id": "lung_007"}


def test_non_finite_voxels_are_refused_naming_case_file_count_and_fix():
    named = r"case 'lung_007' \(/data/imagesTr/lung_007.nii.gz\): image has 2 NaN/inf.*nan_fill"
    with pytest.raises(ValueError, match=named):
        CheckFinited("image")(_case())
    assert describe_case({"id": 3}) == "case 3"


def test_fill_value_replaces_only_the_bad_voxels_and_leaves_other_keys():
    data = _case()
    before = data["image"].clone()
    out = CheckFinited("image", fill_value=-1000.0)(data)
    assert out["image"][0, 1, 2, 3] == -1000.0 and out["image"][0, 4, 4, 0] == -1000.0
    good = torch.isfinite(before)
    assert torch.equal(out["image"][good], before[good]) and int(good.sum()) == before.numel() - 2
    assert out["label"] is data["label"] and out is not data


def test_finite_input_passes_unchanged_and_missing_keys_can_be_allowed():
    data = {"image": torch.ones(1, 2, 2), "id": "ok"}
    assert torch.equal(CheckFinited("image")(data)["image"], data["image"])
    with pytest.raises(KeyError):
        CheckFinited(["image", "extra"])(data)
    assert "extra" not in CheckFinited(["image", "extra"], allow_missing_keys=True)(data)
