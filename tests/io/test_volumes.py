"""Volumes on their grid: NIfTI and DICOM series read as (D, H, W), label maps written back on the same grid."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from sam2tune.io.dicom_seg import read_dicom_seg, write_dicom_seg
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


def test_a_series_written_top_slice_first_reads_as_the_same_volume(tmp_path):
    """InstanceNumber 1 at the last slice along the normal (as a scanner writes a head-first axial CT from the head
    down): the volume, its grid and a SEG written on it are those of the same series written the other way."""
    rng = np.random.default_rng(1)
    volume = rng.integers(0, 2000, (5, 8, 9)).astype(np.uint16)
    write_dicom_series(volume, str(tmp_path / "up"), (2.0, 0.5, 0.6))
    up = read_volume(str(tmp_path / "up"))
    files = write_dicom_series(volume, str(tmp_path / "down"), (2.0, 0.5, 0.6), instance_order="against_normal")
    down = read_volume(str(tmp_path / "down"))
    assert pydicom.dcmread(files[0]).InstanceNumber == 1
    assert float(pydicom.dcmread(files[0]).ImagePositionPatient[2]) == pytest.approx(8.0)  # slice 4 of 5, dz 2 mm
    assert np.array_equal(down.array, volume) and np.array_equal(down.array, up.array)
    assert down.reference_files == files[::-1]  # slice-normal order, whatever the instance order
    labels = np.zeros(volume.shape, np.uint8)
    labels[1, 2:5, 3:6] = 1  # off-centre in z: a flip would show
    seg = write_dicom_seg(labels, down.reference_files, str(tmp_path / "seg.dcm"), {1: "lesion"})
    assert np.array_equal(read_dicom_seg(seg, down.reference_files)[0], labels)
    with pytest.raises(ValueError, match="instance_order 'up'"):
        write_dicom_series(volume, str(tmp_path / "bad"), (2.0, 0.5, 0.6), instance_order="up")
