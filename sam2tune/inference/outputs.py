"""What every volume inference writes: the label map on the input grid (NIfTI), DICOM SEG, slices, result.json.

One writer for the abdomen and knee pipelines (and any later 3D bundle), so the files, their names and the
behaviour on empty predictions are the same everywhere: ``<case>_seg.nii.gz`` always; ``<case>_seg.dcm`` when the
input was a DICOM series, ``dicom_seg`` is on and something was predicted (a SEG needs at least one segment);
``<case>_npy/<k>.npy`` per slice when asked; ``<case>_result.json`` last, so its presence means the case is complete.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from sam2tune.io.volumes import Volume, case_name, write_label_nifti
from sam2tune.utils.atomic import atomic_write, atomic_write_json

logger = logging.getLogger(__name__)


def write_volume_outputs(
    labels: np.ndarray,
    reference: Volume,
    output_dir: str,
    case: str,
    segment_names: dict[int, str],
    result: dict,
    series_description: str,
    dicom_seg: bool = True,
    save_npy: bool = False,
) -> dict:
    """Write one case's outputs and its result.json.

    Args:
        labels: (D, H, W) integer label map on ``reference``'s grid.
        reference: the input volume (grid, NIfTI header or DICOM files).
        output_dir: folder for the files (created).
        case: file name stem of every output.
        segment_names: {label id: name} of the labels the DICOM SEG may hold.
        result: what the pipeline measured (timings, counts, ...); the paths are added to it.
        series_description: DICOM SEG SeriesDescription.
        dicom_seg: write a DICOM SEG when the input is a DICOM series.
        save_npy: also write each slice's labels as ``<case>_npy/<k>.npy``.

    Returns:
        ``result`` with ``nifti``, ``dicom_seg`` (path or None), ``npy_dir`` (path or None) and ``result_json``.
    """
    os.makedirs(output_dir, exist_ok=True)
    out = dict(result)
    out["nifti"] = write_label_nifti(labels, reference, os.path.join(output_dir, f"{case}_seg.nii.gz"))
    out["dicom_seg"] = out["npy_dir"] = None
    if save_npy:
        npy_dir = os.path.join(output_dir, f"{case}_npy")
        os.makedirs(npy_dir, exist_ok=True)
        for k in range(labels.shape[0]):
            atomic_write(os.path.join(npy_dir, f"{k}.npy"), lambda f, a=labels[k]: np.save(f, a))
        out["npy_dir"] = npy_dir
    if reference.kind == "dicom" and reference.reference_files and dicom_seg:
        present = {i: n for i, n in segment_names.items() if (labels == i).any()}
        if present:
            from sam2tune.io.dicom_seg import write_dicom_seg

            out["dicom_seg"] = write_dicom_seg(labels, reference.reference_files,
                                               os.path.join(output_dir, f"{case}_seg.dcm"), present, series_description)
        else:
            logger.warning("Nothing predicted in %s: no DICOM SEG written (a SEG needs at least one segment).",
                           reference.path)
    out["result_json"] = os.path.join(output_dir, f"{case}_result.json")
    atomic_write_json(out, out["result_json"])
    return out


__all__ = ["case_name", "write_volume_outputs"]
