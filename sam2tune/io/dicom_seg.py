"""DICOM SEG writer for label maps predicted on a DICOM series (PACS / 3D Slicer readable), via pydicom-seg."""

from __future__ import annotations

import logging
import os

import numpy as np
import pydicom
import pydicom_seg
import SimpleITK as sitk

logger = logging.getLogger(__name__)
# pydicom-seg logs every frame at INFO; keep bundle logs readable
logging.getLogger("pydicom_seg").setLevel(logging.WARNING)

# Generic SNOMED CT codes: every segment is a "Tissue" of category "Anatomical structure". Task-specific codes are a
# refinement PACS do not need to display or reload the segments.
_CATEGORY = {"CodeValue": "91723000", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Anatomical structure"}
_TYPE = {"CodeValue": "85756007", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Tissue"}
_REQUIRED_TAGS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns")


def _reference_geometry(headers: list[pydicom.Dataset], files: list[str]) -> tuple[list, list, list]:
    """Reference headers -> (origin, spacing (x,y,z), direction (row-major 3x3)) matching label_map slice order."""
    for path, ds in zip(files, headers, strict=True):
        missing = [t for t in _REQUIRED_TAGS if t not in ds]
        if missing:
            raise ValueError(
                f"DICOM reference file {path} lacks {', '.join(missing)}; DICOM SEG needs the source geometry: "
                "pass the original image files of the series."
            )
    row = np.asarray(headers[0].ImageOrientationPatient[:3], dtype=float)
    col = np.asarray(headers[0].ImageOrientationPatient[3:], dtype=float)
    origin = np.asarray(headers[0].ImagePositionPatient, dtype=float)
    if len(headers) > 1:
        # the slice axis follows the files' order (not the cross product), so label_map[i] lands on files[i]
        step = np.asarray(headers[1].ImagePositionPatient, dtype=float) - origin
        dz = float(np.linalg.norm(step))
        if dz == 0:
            raise ValueError(f"DICOM reference files {files[0]} and {files[1]} share one ImagePositionPatient.")
        normal = step / dz
    else:
        normal = np.cross(row, col)
        dz = float(getattr(headers[0], "SliceThickness", 1.0) or 1.0)
    dy, dx = (float(v) for v in headers[0].PixelSpacing)  # DICOM PixelSpacing is (row spacing, column spacing)
    direction = np.stack([row, col, normal], axis=1)  # columns = image axes x, y, z in patient space
    return origin.tolist(), [dx, dy, dz], direction.ravel().tolist()


def _template(segment_names: dict[int, str], labels: list[int], series_description: str) -> pydicom.Dataset:
    """Segment declarations for pydicom-seg (one per label present)."""
    metainfo = {
        "ContentCreatorName": "sam2tune",
        "SeriesDescription": series_description,
        "SeriesNumber": "300",
        "InstanceNumber": "1",
        "BodyPartExamined": "",
        "segmentAttributes": [
            [
                {
                    "labelID": int(label),
                    "SegmentDescription": segment_names[label],
                    "SegmentLabel": segment_names[label],
                    "SegmentAlgorithmType": "AUTOMATIC",
                    "SegmentAlgorithmName": "sam2tune",
                    "SegmentedPropertyCategoryCodeSequence": _CATEGORY,
                    "SegmentedPropertyTypeCodeSequence": _TYPE,
                }
                for label in labels
            ]
        ],
    }
    return pydicom_seg.template.from_dcmqi_metainfo(metainfo)


def write_dicom_seg(
    label_map: np.ndarray,
    reference_files: list[str],
    out_path: str,
    segment_names: dict[int, str],
    series_description: str = "sam2tune",
) -> str:
    """Write a (D,H,W) integer label map as one DICOM SEG referencing ``reference_files`` (one per slice) -> out_path.

    Label 0 is background; every other label present must be named in ``segment_names``. Empty slices are omitted
    from the frames (standard for SEG); labels with no voxels are left out of the segment sequence.
    """
    label_map = np.asarray(label_map)
    if label_map.ndim != 3:
        raise ValueError(f"write_dicom_seg: label_map must be (D,H,W), got shape {label_map.shape}.")
    if not np.issubdtype(label_map.dtype, np.integer) and not np.issubdtype(label_map.dtype, np.bool_):
        raise ValueError(f"write_dicom_seg: label_map must hold integer labels, got dtype {label_map.dtype}.")
    if label_map.min() < 0:
        raise ValueError("write_dicom_seg: label_map has negative labels; use 0 for background and 1..N for segments.")
    if len(reference_files) != label_map.shape[0]:
        raise ValueError(
            f"write_dicom_seg: label_map has {label_map.shape[0]} slices but {len(reference_files)} reference files "
            "were given; pass one DICOM file per slice, in label_map order."
        )
    labels = sorted(int(v) for v in np.unique(label_map) if v != 0)
    if not labels:
        raise ValueError(f"write_dicom_seg: label_map is empty (background only); nothing to write to {out_path}.")
    unnamed = [v for v in labels if v not in segment_names]
    if unnamed:
        raise ValueError(
            f"write_dicom_seg: labels {unnamed} have no entry in segment_names ({segment_names}); name every label."
        )

    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in reference_files]
    rows, cols = int(headers[0].Rows), int(headers[0].Columns)
    if (rows, cols) != tuple(label_map.shape[1:]):
        raise ValueError(
            f"write_dicom_seg: label_map slices are {tuple(label_map.shape[1:])} but {reference_files[0]} is "
            f"{rows}x{cols} (Rows x Columns); resample the prediction to the source grid first."
        )
    origin, spacing, direction = _reference_geometry(headers, reference_files)
    image = sitk.GetImageFromArray(label_map.astype(np.uint16))
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)

    writer = pydicom_seg.MultiClassWriter(
        template=_template(segment_names, labels, series_description), skip_empty_slices=True
    )
    seg = writer.write(image, headers)
    seg.SeriesDescription = series_description
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    seg.save_as(out_path)
    logger.info("Wrote DICOM SEG %s: %d segments over %d slices", out_path, len(labels), label_map.shape[0])
    return out_path


def read_dicom_seg(path: str, reference_files: list[str]) -> tuple[np.ndarray, dict[int, str]]:
    """Read a DICOM SEG back onto the grid of ``reference_files`` -> ((D,H,W) uint16 label map, {label: name}).

    SEG files omit empty slices, so the decoded volume is resampled (nearest neighbour, physical coordinates) onto
    the reference series' grid, in ``reference_files`` order.
    """
    result = pydicom_seg.MultiClassReader().read(pydicom.dcmread(path))
    names = {int(k): str(getattr(v, "SegmentLabel", k)) for k, v in result.segment_infos.items()}
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in reference_files]
    origin, spacing, direction = _reference_geometry(headers, reference_files)
    reference = sitk.Image(int(headers[0].Columns), int(headers[0].Rows), len(headers), sitk.sitkUInt16)
    reference.SetOrigin(origin)
    reference.SetSpacing(spacing)
    reference.SetDirection(direction)
    resampled = sitk.Resample(result.image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayFromImage(resampled).astype(np.uint16), names


__all__ = ["read_dicom_seg", "write_dicom_seg"]
