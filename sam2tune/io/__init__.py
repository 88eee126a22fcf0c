"""File formats: DICOM series writing, DICOM SEG output, NIfTI / DICOM volumes on their grid."""

from sam2tune.io.dicom_seg import read_dicom_seg, write_dicom_seg  # noqa: F401
from sam2tune.io.volumes import Volume, read_volume, write_label_nifti  # noqa: F401
