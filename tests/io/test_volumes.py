"""Volumes on their grid: NIfTI and DICOM series read as (D, H, W), label maps written back on the same grid."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from sam2tune.io.dicom_series import write_dicom_series
from sam2tune.io.volumes import read_volume, write_label_nifti


def test_nifti_round_trip_keeps_grid(tmp_path):
    data = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)  # file axes (i, j, k)
    affine = np.array([[-0.7, 0, 0, 10], [0, -0.7, 0, 20], [0, 0, 2.5, -30], [0, 0, 0, 1]])
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    vol = read_volume(str(path))
    assert vol.array.shape == (7, 6, 5) and vol.array[3, 2, 1] == data[1, 2, 3]
    assert vol.spacing == pytest.approx((2.5, 0.7, 0.7))
    labels = (vol.array > 100).astype(np.uint8)
    out = nib.load(write_label_nifti(labels, vol, str(tmp_path / "seg.nii.gz")))
    assert np.allclose(out.affine, affine) and np.array_equal(np.asarray(out.dataobj), labels.transpose(2, 1, 0))
    with pytest.raises(ValueError, match="differs from the input volume"):
        write_label_nifti(labels[:-1], vol, str(tmp_path / "bad.nii.gz"))


def test_dicom_series_read_and_nifti_on_its_grid(tmp_path):
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 2000, (6, 16, 12)).astype(np.uint16)
    files = write_dicom_series(
        volume, str(tmp_path / "dcm"), spacing=(3.0, 0.8, 0.9), origin=(5.0, -4.0, 12.0), modality="CT"
    )
    vol = read_volume(str(tmp_path / "dcm"))
    assert vol.kind == "dicom" and vol.array.shape == (6, 16, 12)
    assert np.array_equal(vol.array, volume) and vol.reference_files == files
    assert vol.spacing == pytest.approx((3.0, 0.8, 0.9))
    seg = (vol.array > 1000).astype(np.uint8)
    written = sitk.ReadImage(write_label_nifti(seg, vol, str(tmp_path / "seg.nii.gz")))
    assert np.array_equal(sitk.GetArrayFromImage(written), seg)
    assert written.GetOrigin() == pytest.approx((5.0, -4.0, 12.0)) and written.GetSpacing() == pytest.approx(
        (0.9, 0.8, 3.0)
    )


def test_unsupported_input_names_the_fix(tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(ValueError, match="give a .nii/.nii.gz file or a folder"):
        read_volume(str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match="No DICOM series"):
        read_volume(str(tmp_path))
