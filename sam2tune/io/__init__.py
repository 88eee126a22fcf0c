"""File formats: DICOM series writing, DICOM SEG output, NIfTI / DICOM volumes on their grid."""

from sam2tune.io.dicom_seg import read_dicom_seg, write_dicom_seg
from sam2tune.io.volumes import Volume, case_name, read_volume, write_label_nifti

__all__ = ["Volume", "case_name", "read_dicom_seg", "read_volume", "write_dicom_seg", "write_label_nifti"]
