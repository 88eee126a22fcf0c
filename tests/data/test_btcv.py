"""BTCV readers: both layouts, the MONAI datalist, loading on the grid, and bad input named with its fix."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch

from sam2tune.data.btcv import BTCV_LABELS, btcv_datalist, check_case, organ_id, resolve_eval_split, screen_cases
from sam2tune.data.phantoms.btcv import write_btcv_phantoms
from sam2tune.transforms.ct import LoadVolumed, RandSliceWindowd, window_hu


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    out = tmp_path_factory.mktemp("btcv")
    summary = write_btcv_phantoms(str(out), cases=3, seed=1, size=48, depth=16, slices=True)
    return str(out), summary


def test_phantoms_are_ct_like_with_13_organs(phantoms):
    out, summary = phantoms
    assert summary["train"] == 2 and summary["val"] == 1
    img = nib.load(os.path.join(out, "img", "img0001.nii.gz"))
    lab = np.asarray(nib.load(os.path.join(out, "label", "label0001.nii.gz")).dataobj)
    ct = np.asarray(img.dataobj)
    assert ct.shape == lab.shape == (48, 48, 16)
    assert ct.min() <= -900 and 0 < np.median(ct[lab == 6]) < 120  # air outside, liver ~65 HU
    assert np.median(ct[lab == 8]) > np.median(ct[lab == 6]) + 80  # contrast-filled aorta brighter than liver
    assert set(np.unique(lab)) == set(range(14))
    meta = json.load(open(os.path.join(out, "dataset_0.json")))
    assert len(meta["training"]) == 2 and meta["labels"]["6"] == "liver"


def test_datalists_of_both_layouts(phantoms, tmp_path):
    out, _ = phantoms
    train, val = btcv_datalist(out, "train"), btcv_datalist(out, "val")
    assert [i["case"] for i in train] == ["img0001", "img0002"] and [i["case"] for i in val] == ["img0003"]
    # slice layout alone (no img/ or dataset_0.json): Training -> train, Test -> val (model selection); no test split
    sl = tmp_path / "slices"
    sl.mkdir()
    os.symlink(os.path.join(out, "Training"), sl / "Training")
    os.symlink(os.path.join(out, "Test"), sl / "Test")
    assert [i["case"] for i in btcv_datalist(str(sl), "val")] == ["img0003"]
    with pytest.raises(FileNotFoundError, match="no held-out test split.*imagesTs.*no public labels"):
        btcv_datalist(str(sl), "test")
    nifti = LoadVolumed(("image", "label"))(val[0])
    slices = LoadVolumed(("image", "label"))(btcv_datalist(str(sl), "val")[0])
    assert nifti["image"].shape == slices["image"].shape == (1, 16, 48, 48)
    assert torch.equal(nifti["label"], slices["label"])  # same orientation in both layouts
    assert float((nifti["image"] - slices["image"]).abs().mean()) < 0.02  # only JPEG loss differs
    assert nifti["spacing"].tolist() == pytest.approx([60 / 16, 350 / 48, 350 / 48])


def test_window_and_slice_windows():
    assert window_hu(np.array([-1000.0, -175.0, 37.5, 250.0, 900.0])).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    label = torch.zeros(1, 10, 4, 4, dtype=torch.int16)
    label[0, 6:9] = 6
    crop = RandSliceWindowd(window=3, reverse_prob=0.0)(
        {"image": torch.arange(10.0).view(1, 10, 1, 1).expand(1, 10, 4, 4), "label": label}
    )
    first = int(crop["image"][0, 0, 0, 0])
    assert crop["image"].shape == (1, 3, 4, 4) and crop["label"][0, 0].any() and first in (6, 7)
    assert crop["image"][0, :, 0, 0].tolist() == [first, first + 1, first + 2]


def test_organ_ids_and_names():
    assert organ_id("liver") == 6 and organ_id("13") == 13 and BTCV_LABELS[10] == "portal_and_splenic_veins"
    with pytest.raises(ValueError, match="Unknown organ 'kidney'.*1 spleen"):
        organ_id("kidney")


def test_bad_cases_are_named_and_skipped(phantoms, tmp_path):
    out, _ = phantoms
    good = btcv_datalist(out, "train")[0]
    img = nib.load(good["image"])
    short = tmp_path / "label_short.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((48, 48, 8), np.uint8), img.affine), str(short))
    shifted = tmp_path / "label_shifted.nii.gz"
    moved = img.affine.copy()
    moved[0, 3] += 10
    nib.save(nib.Nifti1Image(np.asarray(nib.load(good["label"]).dataobj), moved), str(shifted))
    empty = tmp_path / "label_empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((48, 48, 16), np.uint8), img.affine), str(empty))
    bad = [good | {"label": str(short), "case": "short"}, good | {"label": str(shifted), "case": "shifted"},
           good | {"label": str(empty), "case": "empty"}]
    with pytest.raises(ValueError, match="case short: label .* has shape .*resample the label"):
        check_case(bad[0])
    kept, skipped = screen_cases([good, *bad])
    assert kept == [good]
    reasons = {s["case"]: s["reason"] for s in skipped}
    assert "affine differs" in reasons["shifted"] and "holds no organ" in reasons["empty"]
    with pytest.raises(FileNotFoundError, match="make_phantoms.py btcv"):
        btcv_datalist(str(tmp_path / "nowhere"))


def test_test_split_is_held_out_and_never_the_validation_split(tmp_path, caplog):
    """`test` = labelled cases outside train and val; BTCV's unlabelled imagesTs entries are not scored."""
    import logging

    out = tmp_path / "held"
    summary = write_btcv_phantoms(str(out), cases=5, seed=2, size=32, depth=8, val_fraction=0.2, test_fraction=0.4,
                                  organs=[6])
    assert (summary["train"], summary["val"], summary["test"]) == (2, 1, 2)
    split = {name: [i["case"] for i in btcv_datalist(str(out), name)] for name in ("train", "val", "test")}
    assert split == {"train": ["img0001", "img0002"], "val": ["img0003"], "test": ["img0004", "img0005"]}
    assert resolve_eval_split(str(out), "auto") == "test"
    # MONAI's BTCV datalist lists imagesTs as bare, unlabelled paths: with only those there is no test split
    meta = json.loads((out / "dataset_0.json").read_text())
    meta["test"] = ["imagesTs/img0061.nii.gz", {"image": "imagesTs/img0062.nii.gz"}]
    (out / "dataset_0.json").write_text(json.dumps(meta))
    with pytest.raises(FileNotFoundError, match="no labelled \"test\" cases.*imagesTs.*--eval_split val"):
        btcv_datalist(str(out), "test")
    with caplog.at_level(logging.WARNING, logger="sam2tune.data.btcv"):
        assert resolve_eval_split(str(out), "auto") == "val"
    assert "evaluating on the validation split" in caplog.text and "optimistic" in caplog.text
    assert resolve_eval_split(str(out), "VAL") == "val"
    with pytest.raises(ValueError, match="eval_split must be one of auto, test, val"):
        resolve_eval_split(str(out), "holdout")
    # img/ + label/ without dataset_0.json: test_fraction holds the last cases out of train and val
    (out / "dataset_0.json").unlink()
    assert ([i["case"] for i in btcv_datalist(str(out), "test", val_fraction=0.2, test_fraction=0.4)]
            == ["img0004", "img0005"])
    assert [i["case"] for i in btcv_datalist(str(out), "val", val_fraction=0.2, test_fraction=0.4)] == ["img0003"]
    assert len(btcv_datalist(str(out), "train", val_fraction=0.2, test_fraction=0.4)) == 2
    with pytest.raises(FileNotFoundError, match="test_fraction is 0"):
        btcv_datalist(str(out), "test")
