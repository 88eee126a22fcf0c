"""File formats: DICOM series writing and DICOM SEG output of predictions."""

from sam2tune.io.dicom_seg import read_dicom_seg, write_dicom_seg  # noqa: F401
