"""Read a 3D volume (NIfTI file or DICOM series folder) as a (D, H, W) array with its grid; write label maps back on it.

Array convention everywhere in sam2tune's 3D code: ``array[k, j, i]`` = voxel (i, j, k) of the file, i.e. slice k,
row j, column i. NIfTI goes through nibabel (the header and affine are copied verbatim to the output), DICOM through
SimpleITK's GDCM series reader (slices sorted by position; the sorted file list is kept for DICOM SEG output).
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
import SimpleITK as sitk

NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass
class Volume:
    """A volume as (D, H, W) `array` plus what is needed to write results back on its grid."""

    array: np.ndarray
    affine: np.ndarray  # 4x4 voxel (i, j, k) -> world (RAS for NIfTI, LPS for DICOM)
    spacing: tuple[float, float, float]  # (dz, dy, dx) in mm, matching array axes
    path: str
    kind: str  # "nifti" | "dicom"
    reference_files: list[str] = field(default_factory=list)  # DICOM files in array slice order
    header: object | None = None  # nibabel header (NIfTI) or the SimpleITK image holding the geometry (DICOM)


def case_name(path: str) -> str:
    """An input path -> its case name: the file or folder name without ``.nii`` / ``.nii.gz``.

    Args:
        path: a NIfTI file or a DICOM series folder (a trailing ``/`` is ignored).

    Returns:
        e.g. ``img0001`` for ``.../img0001.nii.gz``.
    """
    return re.sub(r"\.nii(\.gz)?$", "", os.path.basename(os.path.normpath(str(path))))


def is_nifti(path: str) -> bool:
    """True when `path` names a .nii / .nii.gz file."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def read_nifti(path: str, dtype=np.float32) -> Volume:
    """NIfTI file -> Volume with array (D, H, W) (the file's (i, j, k) transposed)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"NIfTI file not found: {path}.")
    try:
        img = nib.load(path)
        data = np.asarray(img.dataobj, dtype=dtype)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name and the fix
        raise ValueError(f"Cannot read NIfTI {path} ({err}); check the file is a complete .nii/.nii.gz.") from err
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3D volume, got shape {data.shape}; pass a single 3D NIfTI.")
    zooms = img.header.get_zooms()[:3]
    return Volume(
        array=np.ascontiguousarray(data.transpose(2, 1, 0)),
        affine=np.asarray(img.affine, dtype=np.float64),
        spacing=(float(zooms[2]), float(zooms[1]), float(zooms[0])),
        path=path,
        kind="nifti",
        header=img.header,
    )


def dicom_series_files(folder: str) -> list[str]:
    """DICOM series folder -> its files sorted by slice position (the first series found)."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"DICOM series folder not found: {folder}.")
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder)
    if not ids:
        raise ValueError(f"No DICOM series in {folder}: pass a folder of .dcm files of one series, or a NIfTI file.")
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, ids[0]))


def read_dicom_series(folder: str, dtype=np.float32) -> Volume:
    """DICOM series folder -> Volume (rescale slope/intercept applied, so CT values are HU)."""
    files = dicom_series_files(folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    image = reader.Execute()
    array = sitk.GetArrayFromImage(image).astype(dtype)  # (D, H, W) = (k, j, i)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    sx, sy, sz = image.GetSpacing()
    return Volume(array, affine, (float(sz), float(sy), float(sx)), folder, "dicom", files, image)


def read_volume(path: str, dtype=np.float32) -> Volume:
    """A NIfTI file or a DICOM series folder -> Volume with array (D, H, W)."""
    path = str(path)
    if os.path.isdir(path):
        return read_dicom_series(path, dtype)
    if is_nifti(path):
        return read_nifti(path, dtype)
    if os.path.isfile(path) and path.lower().endswith(".dcm"):
        return read_dicom_series(os.path.dirname(path), dtype)
    raise ValueError(f"Unsupported input {path}: give a .nii/.nii.gz file or a folder holding one DICOM series.")


def write_label_nifti(labels: np.ndarray, reference: Volume, out_path: str) -> str:
    """(D, H, W) integer label map on `reference`'s grid -> NIfTI at out_path (same affine / geometry)."""
    labels = np.asarray(labels)
    if labels.shape != reference.array.shape:
        raise ValueError(
            f"Label map shape {labels.shape} differs from the input volume {reference.array.shape} ({reference.path}); "
            "resample predictions to the input grid before writing."
        )
    os.makedirs(os.path.dirname(os.path.abspath(out_path)) or ".", exist_ok=True)
    data = labels.astype(np.uint8 if labels.max(initial=0) < 256 else np.uint16)
    if reference.kind == "nifti":
        header = reference.header.copy()
        header.set_data_dtype(data.dtype)
        header["scl_slope"], header["scl_inter"] = 1.0, 0.0  # labels are stored raw, whatever the CT scaling was
        nib.save(nib.Nifti1Image(data.transpose(2, 1, 0), reference.affine, header), out_path)
    else:
        image = sitk.GetImageFromArray(data)
        image.CopyInformation(reference.header)  # SimpleITK converts DICOM's LPS geometry to the NIfTI header
        sitk.WriteImage(image, out_path)
    return out_path


def find_nifti(folder: str) -> list[str]:
    """Sorted .nii / .nii.gz files directly in `folder`."""
    return sorted(glob.glob(os.path.join(folder, "*.nii.gz")) + glob.glob(os.path.join(folder, "*.nii")))


__all__ = [
    "Volume",
    "case_name",
    "dicom_series_files",
    "find_nifti",
    "is_nifti",
    "read_dicom_series",
    "read_nifti",
    "read_volume",
    "write_label_nifti",
]
