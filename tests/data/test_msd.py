"""MSD reader (dataset.json, imagesTr, labelsTr) and the lung-nodule phantom writer."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from sam2tune.data.msd import find_msd_root, msd_datalist, split_cases, volume_datalist
from sam2tune.data.phantoms.lung_nodule import write_lung_nodule_phantoms


@pytest.fixture(scope="module")
def msd(tmp_path_factory):
    out = tmp_path_factory.mktemp("msd")
    summary = write_lung_nodule_phantoms(str(out), cases=5, seed=1, size=40, slices=12)
    return out, summary


def test_phantoms_have_known_nodules(msd):
    out, summary = msd
    root = out / "Task06_Lung"
    truth = json.loads((root / "nodules.json").read_text())
    assert summary["cases"] == 5 and summary["nodules"] == len(truth) >= 5
    label = nib.load(root / "labelsTr" / "lung_001.nii.gz")
    image = nib.load(root / "imagesTr" / "lung_001.nii.gz").get_fdata()
    assert label.shape == (40, 40, 12) and np.allclose(label.affine.diagonal()[:3], [1, 1, 2])
    first = [t for t in truth if t["case"] == "lung_001"]
    assert int(label.get_fdata().sum()) == sum(t["voxels"] for t in first)
    nodule = label.get_fdata() > 0
    assert abs(image[nodule].mean() - 30) < 10 and image[~nodule].min() < -900  # nodule tissue vs air/lung
    assert {t["shape"] for t in truth} <= {"spherical", "lobulated"}


def test_datalist_splits_are_disjoint_and_seeded(msd):
    out, _ = msd
    splits = {s: msd_datalist(str(out), s) for s in ("train", "val", "test")}  # the folder above Task06_Lung works
    ids = [i["id"] for s in splits.values() for i in s]
    assert sorted(ids) == [f"lung_{k:03d}" for k in range(1, 6)] and len(set(ids)) == 5
    assert all(len(v) >= 1 for v in splits.values())
    assert msd_datalist(str(out / "Task06_Lung"), "val") == splits["val"]
    assert splits["train"][0]["label"].endswith(".nii.gz") and splits["train"][0]["image"].startswith(str(out))
    assert split_cases(list("abcdefghij"), 0.2, 0.2, seed=3) == split_cases(list("jihgfedcba"), 0.2, 0.2, seed=3)


def test_missing_folder_and_file_messages(msd, tmp_path):
    with pytest.raises(FileNotFoundError, match="make_phantoms.py lung_nodule"):
        find_msd_root(str(tmp_path / "nowhere"))
    root = tmp_path / "Task06_Lung"
    root.mkdir()
    (root / "dataset.json").write_text(
        json.dumps({"training": [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}]})
    )
    with pytest.raises(FileNotFoundError, match="x.nii.gz"):
        msd_datalist(str(tmp_path), "all")
    with pytest.raises(ValueError, match="at least 3"):
        split_cases(["a", "b"], 0.2, 0.2, 0)


def test_volume_datalist_needs_locations(msd):
    out, _ = msd
    image = str(out / "Task06_Lung" / "imagesTr" / "lung_001.nii.gz")
    with pytest.raises(ValueError, match="--centers"):
        volume_datalist(image)
    assert volume_datalist(image, centers=[[10, 12, 5]])[0]["centers"] == [[10.0, 12.0, 5.0]]
    with pytest.raises(ValueError, match=r"\[x, y, z\]"):
        volume_datalist(image, centers=[[1, 2]])
