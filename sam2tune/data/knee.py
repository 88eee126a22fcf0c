"""Knee-cartilage MR reader: per-subject DICOM series + T1rho/T2 maps + label volume + two metadata JSON files.

```
<dataset_dir>/metadata_for_ml.json      {"<subject>": {"pixel_spacing": [row, col] mm, "slice_thickness": mm,
                                                       "rows": H, "columns": W, "slice": k (optional)}}
<dataset_dir>/metadata_for_stats.json   {"<subject>": [{"slice": k, "pixel_spacing": [..], "slice_thickness": ..,
                                                        "rows": H, "columns": W}, ...one per slice]}
<dataset_dir>/<subject>/image/*.dcm     anatomical MR, one DICOM series (sagittal slices)
<dataset_dir>/<subject>/t1rho/*.dcm  or t1rho.nii.gz     T1rho map (ms), same grid as the image
<dataset_dir>/<subject>/t2/*.dcm     or t2.nii.gz        T2 map (ms), same grid as the image
<dataset_dir>/<subject>/label.nii.gz or label/*.dcm      tissue ids (0 background, 1..N tissues)
```

Volumes are read with SimpleITK (ITK's GDCM series reader), so spacing, origin and orientation are kept and the
arrays are (D, H, W) in DICOM slice-position order. A subject with bad input (missing PixelSpacing or
SliceThickness, mixed series in one folder, a map on another grid, metadata disagreeing with the header) raises
``KneeDataError`` naming subject and field; ``scan_knee_dataset`` skips it, lists it and goes on with the rest.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import pydicom
import SimpleITK as sitk
from tqdm import tqdm

from sam2tune.data.msd import split_cases
from sam2tune.io.volumes import read_dicom_series
from sam2tune.prompts.simulate import connected_instances

logger = logging.getLogger(__name__)
MAPS = ("t1rho", "t2")
_VOLUME_EXT = (".nii.gz", ".nii", ".nrrd", ".mha")
_HINT = ("See docs/data_formats.md (knee section); `python scripts/make_phantoms.py knee --out DIR` writes a "
         "phantom dataset in this layout.")


class KneeDataError(ValueError):
    """Bad input for one subject: names the subject and the field so it can be fixed or skipped."""

    def __init__(self, subject: str, field: str, message: str) -> None:
        super().__init__(f"subject {subject}, {field}: {message}")
        self.subject, self.field = subject, field


@dataclass
class KneeSubject:
    """One subject's volumes (D,H,W) in the image grid, its DICOM files (slice order) and metadata."""

    subject: str
    image: np.ndarray
    label: np.ndarray | None
    maps: dict[str, np.ndarray]
    spacing: tuple[float, float, float]  # (dz, dy, dx) mm
    files: list[str]
    meta_ml: dict
    meta_stats: list[dict] = field(default_factory=list)


def _dicom_files(folder: str) -> list[str]:
    files = sorted(f for f in glob.glob(os.path.join(folder, "*")) if os.path.isfile(f))
    return [f for f in files if pydicom.misc.is_dicom(f)]


def check_knee_dicom(folder: str, subject: str, name: str) -> None:
    """Check a knee DICOM folder's headers before reading: files present, geometry tags, one series.

    Args:
        folder: the DICOM series folder (e.g. ``<subject>/image/``).
        subject: the subject id the error names.
        name: the series' role (image, t1rho, t2) the error names.

    Raises:
        KneeDataError: no DICOM file, a file without PixelSpacing / SliceThickness (mm biomarkers need them), or
            more than one SeriesInstanceUID in the folder.
    """
    files = _dicom_files(folder)
    if not files:
        raise KneeDataError(subject, name, f"no DICOM files in {folder}.")
    uids = set()
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        for tag in ("PixelSpacing", "SliceThickness"):
            if getattr(ds, tag, None) in (None, ""):
                raise KneeDataError(subject, f"{name} {tag}", f"{f} has no {tag}; re-export the series with "
                                    "geometry (spacing is needed for mm biomarkers).")
        uids.add(str(getattr(ds, "SeriesInstanceUID", "")))
    if len(uids) > 1:
        raise KneeDataError(subject, f"{name} SeriesInstanceUID", f"{folder} mixes {len(uids)} series "
                            f"({', '.join(sorted(uids))}); keep one series per folder.")


def _read_knee_dicom(folder: str, subject: str, name: str) -> tuple[sitk.Image, list[str]]:
    """Checked knee DICOM folder -> (SimpleITK image with spacing/origin/direction, files in slice order)."""
    check_knee_dicom(folder, subject, name)
    volume = read_dicom_series(folder)
    return volume.header, volume.reference_files


def _read_any(subject_dir: str, subject: str, name: str, required: bool = True) -> tuple[sitk.Image | None, list[str]]:
    """<subject>/<name>/ (DICOM) or <subject>/<name>.nii.gz (etc.) -> (image, DICOM files or [])."""
    folder = os.path.join(subject_dir, name)
    if os.path.isdir(folder):
        return _read_knee_dicom(folder, subject, name)
    for ext in _VOLUME_EXT:
        path = os.path.join(subject_dir, name + ext)
        if os.path.isfile(path):
            return sitk.ReadImage(path), []
    if required:
        raise KneeDataError(subject, name, f"neither {folder}/ (DICOM) nor {name}.nii.gz found in {subject_dir}.")
    return None, []


def _same_grid(ref: sitk.Image, other: sitk.Image, tol: float = 1e-3) -> str | None:
    """None when ``other`` lies on ``ref``'s grid, else a sentence saying what differs."""
    for what, a, b in (("size", ref.GetSize(), other.GetSize()), ("spacing", ref.GetSpacing(), other.GetSpacing()),
                       ("origin", ref.GetOrigin(), other.GetOrigin()),
                       ("direction", ref.GetDirection(), other.GetDirection())):
        if not np.allclose(a, b, atol=tol * max(1.0, float(np.max(np.abs(a))))):
            return f"{what} {tuple(round(float(v), 4) for v in b)} != image {tuple(round(float(v), 4) for v in a)}"
    return None


def _check_meta(subject: str, meta: dict, rows: int, cols: int, spacing: tuple, source: str) -> None:
    for key in ("pixel_spacing", "slice_thickness", "rows", "columns"):
        if key not in meta:
            raise KneeDataError(subject, f"{source} {key}", "missing; add it (see docs/data_formats.md).")
    if (int(meta["rows"]), int(meta["columns"])) != (rows, cols):
        raise KneeDataError(subject, f"{source} rows/columns", f"{meta['rows']}x{meta['columns']} but the image is "
                            f"{rows}x{cols}.")
    if not np.allclose([float(v) for v in meta["pixel_spacing"]], spacing[1:], rtol=1e-3):
        raise KneeDataError(subject, f"{source} pixel_spacing", f"{meta['pixel_spacing']} but the DICOM header says "
                            f"{list(spacing[1:])}.")


def load_metadata(dataset_dir: str) -> tuple[dict, dict]:
    """(metadata_for_ml, metadata_for_stats) dicts from dataset_dir; clear error if missing or not JSON."""
    out = []
    for name in ("metadata_for_ml.json", "metadata_for_stats.json"):
        path = os.path.join(dataset_dir, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found. {_HINT}")
        try:
            with open(path) as fh:
                out.append(json.load(fh))
        except ValueError as err:
            raise ValueError(f"{path} is not valid JSON ({err}). {_HINT}") from err
    return out[0], out[1]


def load_knee_subject(dataset_dir: str, subject: str, meta_ml: dict, meta_stats: dict,
                      require_label: bool = True) -> KneeSubject:
    """Read and validate one subject -> KneeSubject; KneeDataError naming subject and field on bad input."""
    sdir = os.path.join(dataset_dir, subject)
    image, files = _read_any(sdir, subject, "image")
    if not files:
        raise KneeDataError(subject, "image", f"{sdir}/image/ must be a DICOM series folder.")
    sx, sy, sz = image.GetSpacing()
    spacing = (float(sz), float(sy), float(sx))
    rows, cols = image.GetSize()[1], image.GetSize()[0]
    if subject not in meta_ml:
        raise KneeDataError(subject, "metadata_for_ml.json", "no entry for this subject; add one.")
    _check_meta(subject, meta_ml[subject], rows, cols, spacing, "metadata_for_ml.json")
    stats = meta_stats.get(subject)
    if not isinstance(stats, list) or len(stats) != image.GetSize()[2]:
        n = len(stats) if isinstance(stats, list) else 0
        raise KneeDataError(subject, "metadata_for_stats.json", f"needs one entry per slice ({image.GetSize()[2]}), "
                            f"found {n}.")
    for entry in stats:
        _check_meta(subject, entry, rows, cols, spacing, f"metadata_for_stats.json slice {entry.get('slice')}")
    maps = {}
    for name in MAPS:
        m, _ = _read_any(sdir, subject, name)
        problem = _same_grid(image, m)
        if problem:
            raise KneeDataError(subject, f"{name} grid", f"{problem}; resample the map onto the image grid.")
        maps[name] = sitk.GetArrayFromImage(m).astype(np.float32)
    label_img, _ = _read_any(sdir, subject, "label", required=require_label)
    label = None
    if label_img is not None:
        problem = _same_grid(image, label_img)
        if problem:
            raise KneeDataError(subject, "label grid", f"{problem}; the label must be on the image grid.")
        label = sitk.GetArrayFromImage(label_img).astype(np.int16)
    return KneeSubject(subject, sitk.GetArrayFromImage(image).astype(np.float32), label, maps, spacing, files,
                       dict(meta_ml[subject]), list(stats))


@dataclass
class KneeInput:
    """A subject to segment without a label: image (D,H,W), its SimpleITK geometry, DICOM files, maps present."""

    case: str
    image: np.ndarray
    reference: sitk.Image  # spacing / origin / direction of the input grid (predictions are written on it)
    files: list[str]  # DICOM files in slice order ([] for a NIfTI input: no DICOM SEG then)
    maps: dict[str, np.ndarray]
    spacing: tuple[float, float, float]  # (dz, dy, dx) mm


def read_knee_input(path: str) -> KneeInput:
    """Label-free input -> KneeInput: a subject folder (image/ DICOM [+ t1rho, t2]), a DICOM series folder or a NIfTI.

    Maps are optional here (biomarkers that need a missing map are left out); a map must lie on the image grid.
    """
    path = os.path.normpath(str(path))
    if os.path.isdir(os.path.join(path, "image")):
        case = os.path.basename(path)
        image, files = _read_any(path, case, "image")
        maps = {}
        for name in MAPS:
            m, _ = _read_any(path, case, name, required=False)
            if m is None:
                continue
            problem = _same_grid(image, m)
            if problem:
                raise KneeDataError(case, f"{name} grid", f"{problem}; resample the map onto the image grid.")
            maps[name] = sitk.GetArrayFromImage(m).astype(np.float32)
    elif os.path.isdir(path):
        case, maps = os.path.basename(path), {}
        image, files = _read_knee_dicom(path, case, "image")
    elif os.path.isfile(path) and path.endswith(_VOLUME_EXT):
        case, maps, files = os.path.basename(path).split(".")[0], {}, []
        image = sitk.ReadImage(path)
    else:
        raise FileNotFoundError(f"Knee input not found or not readable: {path}. Give a subject folder (with image/), "
                                f"a DICOM series folder or a .nii.gz file. {_HINT}")
    if image.GetDimension() != 3:
        raise KneeDataError(case, "image", f"expected a 3D volume, got {image.GetDimension()}D.")
    sx, sy, sz = image.GetSpacing()
    return KneeInput(case, sitk.GetArrayFromImage(image).astype(np.float32), image, files, maps,
                     (float(sz), float(sy), float(sx)))


def list_subjects(dataset_dir: str) -> list[str]:
    """Subject folders (those holding image/) under dataset_dir, sorted."""
    if not os.path.isdir(dataset_dir):
        raise FileNotFoundError(f"Knee dataset folder not found: {dataset_dir}. {_HINT}")
    subjects = sorted(d for d in os.listdir(dataset_dir) if os.path.isdir(os.path.join(dataset_dir, d, "image")))
    if not subjects:
        raise FileNotFoundError(f"No subject folders with image/ in {dataset_dir}. {_HINT}")
    return subjects


def scan_knee_dataset(dataset_dir: str, subjects: list[str] | None = None) -> tuple[list[KneeSubject], list[dict]]:
    """Load every (or the given) subject -> (good subjects, skipped [{"subject", "field", "error"}]); logs skips."""
    meta_ml, meta_stats = load_metadata(dataset_dir)
    good, skipped = [], []
    for subject in tqdm(subjects if subjects is not None else list_subjects(dataset_dir), desc="knee subjects"):
        try:
            good.append(load_knee_subject(dataset_dir, subject, meta_ml, meta_stats))
        except KneeDataError as err:
            logger.warning("Skipping %s", err)
            skipped.append({"subject": err.subject, "field": err.field, "error": str(err)})
    if skipped:
        logger.warning("Skipped %d knee subject(s): %s", len(skipped), ", ".join(s["subject"] for s in skipped))
    return good, skipped


def normalize_intensity(volume: np.ndarray, lower: float = 0.5, upper: float = 99.5) -> np.ndarray:
    """MR volume -> float32 in [0, 1] by per-volume percentiles (MR intensities have no absolute scale)."""
    lo, hi = np.percentile(volume, [lower, upper])
    return np.clip((volume - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)


def split_subjects(dataset_dir: str, split: str, val_fraction: float = 0.25, test_fraction: float = 0.25,
                   seed: int = 0) -> list[str]:
    """Seeded subject split ("train" | "val" | "test" | "all") -> sorted subject ids (same as the MSD reader's)."""
    subjects = list_subjects(dataset_dir)
    if split == "all":
        return subjects
    if split not in ("train", "val", "test"):
        raise ValueError(f"Unknown split {split!r}: choose train, val, test or all.")
    return split_cases(subjects, val_fraction, test_fraction, seed)[split]


def _save_npy(path: str, array: np.ndarray) -> None:
    # write-then-rename: ranks of a multi-GPU run build the same cache at once and must never read half a file
    tmp = f"{path}.{os.getpid()}.tmp.npy"
    np.save(tmp, array)
    os.replace(tmp, path)


def knee_slice_datalist(dataset_dir: str, split: str, cache_dir: str, tissues: list[int] | None = None,
                        mode: str = "train", val_fraction: float = 0.25, test_fraction: float = 0.25,
                        seed: int = 0) -> list[dict]:
    """Subjects of ``split`` -> 2D slice items for MONAI, with slices cached as .npy under ``cache_dir/<subject>/``.

    mode "train": one item per slice holding any tissue ({"image", "label", "id", "subject", "slice"});
    mode "eval": one item per (slice, tissue, connected instance) with "class_id" and "instance" added, so every
    instance gets its own box prompt and the slice predictions can be put back into volumes.
    Skipped subjects are written to ``cache_dir/skipped_subjects.json``.
    """
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}.")
    subjects, skipped = scan_knee_dataset(dataset_dir, split_subjects(dataset_dir, split, val_fraction,
                                                                      test_fraction, seed))
    os.makedirs(cache_dir, exist_ok=True)
    with open(os.path.join(cache_dir, f"skipped_subjects_{split}.json"), "w") as fh:
        json.dump(skipped, fh, indent=1)
    items = []
    for s in subjects:
        tissue_ids = tissues or sorted(int(v) for v in np.unique(s.label) if v > 0)
        sdir = os.path.join(cache_dir, s.subject)
        os.makedirs(sdir, exist_ok=True)
        image = normalize_intensity(s.image)
        for z in range(image.shape[0]):
            lab = s.label[z]
            if not np.isin(lab, tissue_ids).any():
                continue
            img_path, lab_path = os.path.join(sdir, f"img_{z:04d}.npy"), os.path.join(sdir, f"lab_{z:04d}.npy")
            _save_npy(img_path, image[z])
            _save_npy(lab_path, np.where(np.isin(lab, tissue_ids), lab, 0).astype(np.float32))
            base = {"image": img_path, "label": lab_path, "subject": s.subject, "slice": z}
            if mode == "train":
                items.append({**base, "id": f"{s.subject}_s{z:03d}"})
                continue
            for t in tissue_ids:
                for k, _ in enumerate(connected_instances(lab == t)):
                    items.append({**base, "id": f"{s.subject}_s{z:03d}_t{t}_i{k}", "class_id": int(t), "instance": k})
    if not items:
        raise ValueError(f"No labelled slices for split {split!r} in {dataset_dir} "
                         f"({len(subjects)} subjects read, {len(skipped)} skipped). {_HINT}")
    return items


__all__ = ["KneeDataError", "KneeInput", "KneeSubject", "read_knee_input", "knee_slice_datalist", "list_subjects",
           "load_knee_subject", "load_metadata", "normalize_intensity", "check_knee_dicom", "scan_knee_dataset",
           "split_subjects"]
