"""Write a 3D volume as a standard single-frame DICOM series (MR or CT) with full geometry, using pydicom."""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

_SOP_CLASS = {"MR": "1.2.840.10008.5.1.4.1.1.4", "CT": "1.2.840.10008.5.1.4.1.1.2"}


def write_dicom_series(
    volume: np.ndarray,
    out_dir: str,
    spacing: Sequence[float],
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    modality: str = "MR",
    patient_id: str = "anon",
    series_description: str = "",
    study_uid: str | None = None,
    extra: dict | None = None,
    instance_order: str = "along_normal",
) -> list[str]:
    """Volume (D,H,W) uint16-range values -> out_dir/IM_0001.dcm.. ; spacing = (dz, dy, dx) mm.

    Slice d of ``volume`` lies at ``origin + d * dz * (row x column)`` of ``orientation`` whatever the file order.
    ``instance_order`` sets which file holds it: "along_normal" (IM_0001 / InstanceNumber 1 = slice 0) or
    "against_normal" (IM_0001 = slice D-1: a head-first axial CT scanned from the head down, as scanners often
    write it). ``extra`` sets further header keywords on every slice (e.g. {"EchoTime": 30}); ``SliceThickness``
    is dz (contiguous slices).

    Returns:
        The D file paths in InstanceNumber order.
    """
    if volume.ndim != 3:
        raise ValueError(f"write_dicom_series: volume must be (D,H,W), got {volume.shape}.")
    if modality not in _SOP_CLASS:
        raise ValueError(f"write_dicom_series: modality {modality!r} not supported; use one of {list(_SOP_CLASS)}.")
    if instance_order not in ("along_normal", "against_normal"):
        raise ValueError(f"write_dicom_series: instance_order {instance_order!r}: use 'along_normal' or "
                         "'against_normal'.")
    dz, dy, dx = (float(s) for s in spacing)
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, col)
    pixels = np.clip(np.rint(volume), 0, 65535).astype(np.uint16)
    study_uid = study_uid or generate_uid()
    series_uid, frame_uid = generate_uid(), generate_uid()
    today = datetime.date.today().strftime("%Y%m%d")
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    depth = pixels.shape[0]
    for k in range(depth):
        d = k if instance_order == "along_normal" else depth - 1 - k  # the volume slice file k holds
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = _SOP_CLASS[modality]
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = os.path.join(out_dir, f"IM_{k + 1:04d}.dcm")
        ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.PatientName = modality, patient_id, patient_id
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyDate = ds.SeriesDate = today
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, k + 1
        ds.SeriesDescription = series_description
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row, *col)]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in np.asarray(origin, float) + d * dz * normal]
        ds.SliceLocation = f"{d * dz:.6f}"
        ds.PixelSpacing = [f"{dy:.6f}", f"{dx:.6f}"]
        ds.SliceThickness = f"{dz:.6f}"
        ds.Rows, ds.Columns = pixels.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        for key, value in (extra or {}).items():
            setattr(ds, key, value)
        ds.PixelData = pixels[d].tobytes()
        ds.is_little_endian, ds.is_implicit_VR = True, False
        pydicom.dcmwrite(path, ds, write_like_original=False)
        paths.append(path)
    return paths


__all__ = ["write_dicom_series"]
