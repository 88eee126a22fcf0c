"""Knee reader: geometry kept from DICOM, maps from DICOM or NIfTI, bad subjects skipped and listed by field."""

import json
import os
import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from sam2tune.data.knee import (
    KneeDataError,
    check_knee_dicom,
    knee_slice_datalist,
    load_knee_subject,
    load_metadata,
    read_knee_input,
    scan_knee_dataset,
)
from sam2tune.data.phantoms.knee import write_knee_phantoms
from sam2tune.io.volumes import read_dicom_series
from sam2tune.transforms.instance_select import SelectInstanced

SPACING = (2.5, 0.5, 0.4)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("knee"))
    write_knee_phantoms(out, cases=5, size=(40, 48), slices=5, spacing=SPACING, seed=1)
    return out


def test_subject_geometry_maps_and_metadata(dataset):
    meta_ml, meta_stats = load_metadata(dataset)
    s = load_knee_subject(dataset, "knee_001", meta_ml, meta_stats)
    assert s.spacing == pytest.approx(SPACING)
    assert s.image.shape == s.label.shape == s.maps["t1rho"].shape == s.maps["t2"].shape == (5, 40, 48)
    # T1rho came from DICOM (RescaleSlope 0.1), T2 from NIfTI: both hold the constructed per-tissue values
    assert np.median(s.maps["t1rho"][s.label == 1]) == pytest.approx(40.0, abs=0.5)
    assert np.median(s.maps["t2"][s.label == 3]) == pytest.approx(36.0, abs=0.5)
    assert len(s.files) == 5
    z = [float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in s.files]
    assert np.allclose(np.diff(z), SPACING[0])  # files in slice order, spaced by the slice thickness
    assert s.meta_ml["pixel_spacing"] == [SPACING[1], SPACING[2]]


def test_bad_subjects_are_skipped_and_named(dataset, tmp_path):
    bad = str(tmp_path / "bad")
    shutil.copytree(dataset, bad)
    # knee_001: one slice lacks PixelSpacing
    f = sorted(os.listdir(f"{bad}/knee_001/image"))[2]
    ds = pydicom.dcmread(f"{bad}/knee_001/image/{f}")
    del ds.PixelSpacing
    ds.save_as(f"{bad}/knee_001/image/{f}")
    # knee_002: a file of another series (knee_003's) in its folder
    shutil.copy(f"{bad}/knee_003/image/IM_0001.dcm", f"{bad}/knee_002/image/IM_0099.dcm")
    # knee_003: T2 map resampled onto another grid
    t2 = sitk.ReadImage(f"{bad}/knee_003/t2.nii.gz")
    t2.SetSpacing((0.8, 0.5, 2.5))
    sitk.WriteImage(t2, f"{bad}/knee_003/t2.nii.gz")
    # knee_004: metadata disagreeing with the header
    with open(f"{bad}/metadata_for_ml.json") as fh:
        meta = json.load(fh)
    meta["knee_004"]["pixel_spacing"] = [0.7, 0.7]
    with open(f"{bad}/metadata_for_ml.json", "w") as fh:
        json.dump(meta, fh)
    good, skipped = scan_knee_dataset(bad)
    assert [s.subject for s in good] == ["knee_005"]
    by_subject = {s["subject"]: s for s in skipped}
    assert by_subject["knee_001"]["field"] == "image PixelSpacing"
    assert "has no PixelSpacing" in by_subject["knee_001"]["error"]
    assert by_subject["knee_002"]["field"] == "image SeriesInstanceUID"
    assert "mixes 2 series" in by_subject["knee_002"]["error"]
    assert by_subject["knee_003"]["field"] == "t2 grid"
    assert "resample the map onto the image grid" in by_subject["knee_003"]["error"]
    assert by_subject["knee_004"]["field"] == "metadata_for_ml.json pixel_spacing"
    with pytest.raises(KneeDataError, match="subject knee_001, image PixelSpacing"):
        load_knee_subject(bad, "knee_001", *load_metadata(bad))


def test_knee_dicom_check_then_the_io_reader(dataset, tmp_path):
    folder = f"{dataset}/knee_001/image"
    assert check_knee_dicom(folder, "knee_001", "image") is None
    got = read_knee_input(folder)  # a bare DICOM series folder: the check, then sam2tune.io's reader
    vol = read_dicom_series(folder)
    assert got.files == vol.reference_files and len(got.files) == 5
    assert np.array_equal(got.image, vol.array) and got.spacing == pytest.approx(SPACING)
    bad = tmp_path / "image"
    shutil.copytree(folder, bad)
    f = sorted(os.listdir(bad))[0]
    ds = pydicom.dcmread(bad / f)
    del ds.SliceThickness
    ds.save_as(bad / f)
    with pytest.raises(KneeDataError, match="subject knee_9, t2 SliceThickness"):
        check_knee_dicom(str(bad), "knee_9", "t2")
    (tmp_path / "empty").mkdir()
    with pytest.raises(KneeDataError, match="no DICOM files in"):
        check_knee_dicom(str(tmp_path / "empty"), "knee_9", "image")


def test_slice_datalists_train_and_eval(dataset, tmp_path):
    train = knee_slice_datalist(dataset, "all", str(tmp_path), [1, 2, 3], "train")
    assert len(train) == 5 * 3  # 5 subjects x 3 labelled slices (edge slices are empty)
    img = np.load(train[0]["image"])
    assert img.shape == (40, 48) and 0.0 <= img.min() and img.max() <= 1.0
    ev = knee_slice_datalist(dataset, "all", str(tmp_path), [1, 3], "eval")
    assert {i["class_id"] for i in ev} == {1, 3}
    item = ev[0]
    lab = np.load(item["label"])[None]
    out = SelectInstanced(keys="label")({**item, "label": lab})
    assert out["label"].shape == lab.shape and set(np.unique(out["label"])) == {0.0, 1.0}
    assert np.all(lab[out["label"] > 0] == item["class_id"]) and out["prompt_class"] == item["class_id"]
    with pytest.raises(ValueError, match="No labelled slices"):
        knee_slice_datalist(dataset, "all", str(tmp_path), [9], "train")
