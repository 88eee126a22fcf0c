"""Knee MR phantoms in the knee-cartilage layout (see sam2tune/data/knee.py), with analytic biomarker truth.

Each subject is a sagittal stack: rows = superior -> inferior, columns = anterior -> posterior, slices = medial ->
lateral. On every slice of the central slab sit, drawn in millimetres and rasterised with the real spacing:

- a femoral condyle (disc + shaft) with femoral cartilage = an annulus sector of exact thickness wrapping its bottom,
- a tibia under a large-radius concave plateau with tibial cartilage = a thin annulus sector on top,
- a patella (disc, anterior) with patellar cartilage = an annulus sector facing the femur.

T1rho and T2 maps hold one known value per tissue (+ Gaussian noise of known sd). ``<out>/truth.json`` holds,
per subject and tissue, the analytic thickness (mm), volume (mm^3), height (mm, superior-inferior extent) and the
map values, so tests can check the biomarker code against geometry, not against itself.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import SimpleITK as sitk

from sam2tune.io.dicom_series import write_dicom_series

TISSUES = {1: "femoral_cartilage", 2: "tibial_cartilage", 3: "patellar_cartilage"}
T1RHO_MS = {0: 0.0, 1: 40.0, 2: 35.0, 3: 45.0, "bone": 30.0, "fluid": 80.0}
T2_MS = {0: 0.0, 1: 32.0, 2: 28.0, 3: 36.0, "bone": 20.0, "fluid": 60.0}
MR_INTENSITY = {0: 0.0, 1: 700.0, 2: 650.0, 3: 750.0, "bone": 1500.0, "fluid": 300.0}


def _sector(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r0: float, r1: float,
            angle: float, half_width: float) -> np.ndarray:
    """Pixels (mm grids yy, xx) with r0 <= radius < r1 and direction within half_width of angle (0 = +x, pi/2 = +y)."""
    dy, dx = yy - cy, xx - cx
    r = np.hypot(dy, dx)
    diff = np.angle(np.exp(1j * (np.arctan2(dy, dx) - angle)))
    return (r >= r0) & (r < r1) & (np.abs(diff) <= half_width)


def _geometry(rows: int, cols: int, dy: float, dx: float, rng: np.random.Generator) -> dict:
    """Random-but-valid shape parameters (mm) for one subject, scaled to the field of view."""
    fov_y, fov_x = rows * dy, cols * dx
    s = min(fov_y, fov_x)
    g = {
        "femur": {"cy": fov_y * 0.38, "cx": fov_x * rng.uniform(0.52, 0.58), "r": s * 0.22,
                  "t": round(float(rng.uniform(0.09, 0.11) * s), 3), "angle": math.pi / 2, "half": math.radians(80)},
        "patella": {"cy": fov_y * 0.30, "cx": fov_x * 0.12, "r": s * 0.08,
                    "t": round(float(rng.uniform(0.07, 0.09) * s), 3), "angle": 0.0, "half": math.radians(55)},
    }
    f = g["femur"]
    gap = max(dy, dx) * 3  # joint space of a few pixels keeps the femoral and tibial plates apart
    t_tib = round(float(rng.uniform(0.07, 0.09) * s), 3)
    rt = s * 1.2  # large radius -> a shallow concave plateau
    top = f["cy"] + f["r"] + f["t"] + gap  # top of tibial cartilage under the condyle
    # tibial cartilage = annulus (rt - t, rt] of a circle centred *above*, sector pointing down: concave plateau
    g["tibia"] = {"cy": top - rt + t_tib, "cx": f["cx"], "r": rt - t_tib, "t": t_tib,
                  "angle": math.pi / 2, "half": math.asin(min(0.95, s * 0.32 / rt))}
    return g


def _analytic(p: dict, n_slices: int, dz: float) -> dict:
    """Annulus-sector truth: thickness, volume (area x slab length), superior-inferior height."""
    r0, r1, a, h = p["r"], p["r"] + p["t"], p["angle"], p["half"]
    area = h * (r1 ** 2 - r0 ** 2)  # sector of angle 2h: (2h / 2) (r1^2 - r0^2)
    # y extent of the sector: sample its boundary densely (exact for our convex-angle sectors)
    theta = np.linspace(a - h, a + h, 2001)
    ys = np.concatenate([r0 * np.sin(theta), r1 * np.sin(theta)])
    return {"thickness_mm": p["t"], "area_mm2": float(area), "volume_mm3": float(area * n_slices * dz),
            "height_mm": float(ys.max() - ys.min())}


def _tissue_map(values: dict, noise: float, lab2d: np.ndarray, bone: np.ndarray, fluid: np.ndarray,
                anatomy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-tissue constant values (+ Gaussian noise of sd ``noise`` inside the anatomy) -> (D,H,W) float32 map."""
    m = np.zeros(lab2d.shape, np.float32)
    m[bone & (lab2d == 0)] = values["bone"]
    m[fluid] = values["fluid"]
    for t in TISSUES:
        m[lab2d == t] = values[t]
    vol = np.where(anatomy, m[None], 0.0)
    return (vol + rng.normal(0.0, noise, vol.shape) * (vol > 0)).astype(np.float32)


def _as_nifti(arr: np.ndarray, reference: sitk.Image, path: str) -> None:
    """Array (D,H,W) -> NIfTI on the reference (DICOM series) grid: spacing, origin and direction copied."""
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(reference)
    sitk.WriteImage(img, path)


def write_knee_phantoms(
    out: str,
    cases: int = 4,
    seed: int = 0,
    size: int | tuple[int, int] = 64,
    slices: int = 12,
    spacing: tuple[float, float, float] = (3.0, 0.6, 0.6),
    map_noise_sd: float = 2.0,
    map_format: str = "mixed",
) -> dict:
    """Write ``cases`` subjects (DICOM MR + T1rho/T2 maps + label + both metadata files) -> summary dict.

    ``spacing`` = (slice thickness, row spacing, column spacing) in mm; unequal values give anisotropic phantoms.
    ``map_format``: "dicom", "nifti" or "mixed" (T1rho as DICOM, T2 as NIfTI: both readers get exercised).
    """
    rows, cols = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if cases < 1:
        raise ValueError(f"cases must be >= 1, got {cases}.")
    if rows < 32 or cols < 32 or slices < 4:
        raise ValueError(f"knee phantoms need size >= 32 and slices >= 4, got {rows}x{cols}, slices={slices}.")
    if map_format not in ("dicom", "nifti", "mixed"):
        raise ValueError(f"map_format must be 'dicom', 'nifti' or 'mixed', got {map_format!r}.")
    dz, dy, dx = (float(s) for s in spacing)
    rng = np.random.default_rng(seed)
    os.makedirs(out, exist_ok=True)
    yy, xx = np.meshgrid((np.arange(rows) + 0.5) * dy, (np.arange(cols) + 0.5) * dx, indexing="ij")
    first, last = 1, slices - 1  # tissue on slices [1, slices-1): empty edge slices, as in real scans
    meta_ml, meta_stats, truth = {}, {}, {}
    for i in range(cases):
        subject = f"knee_{i + 1:03d}"
        g = _geometry(rows, cols, dy, dx, rng)
        lab2d = np.zeros((rows, cols), np.uint8)
        bone = np.zeros((rows, cols), bool)
        for tissue, part in ((1, "femur"), (2, "tibia"), (3, "patella")):
            p = g[part]
            lab2d[_sector(yy, xx, p["cy"], p["cx"], p["r"], p["r"] + p["t"], p["angle"], p["half"])] = tissue
            bone |= np.hypot(yy - p["cy"], xx - p["cx"]) < p["r"]
        f = g["femur"]
        bone |= (np.abs(xx - f["cx"]) < f["r"] * 0.7) & (yy < f["cy"])  # femoral shaft
        fluid = (lab2d == 0) & ~bone & (np.hypot(yy - f["cy"], xx - f["cx"]) < f["r"] * 1.6)
        label = np.zeros((slices, rows, cols), np.uint8)
        label[first:last] = lab2d
        anatomy = np.zeros((slices, rows, cols), bool)
        anatomy[first:last] = True
        parts = (lab2d, bone, fluid, anatomy)
        mr = _tissue_map(MR_INTENSITY, 40.0, *parts, rng)
        t1rho, t2 = _tissue_map(T1RHO_MS, map_noise_sd, *parts, rng), _tissue_map(T2_MS, map_noise_sd, *parts, rng)
        sdir = os.path.join(out, subject)
        files = write_dicom_series(mr, os.path.join(sdir, "image"), (dz, dy, dx), patient_id=subject,
                                   series_description="SAG PD FS", origin=(-20.0, -30.0, -10.0))
        series_reader = sitk.ImageSeriesReader()
        series_reader.SetFileNames(files)
        reference = series_reader.Execute()
        _as_nifti(label, reference, os.path.join(sdir, "label.nii.gz"))
        for name, vol in (("t1rho", t1rho), ("t2", t2)):
            if map_format == "dicom" or (map_format == "mixed" and name == "t1rho"):
                # maps stored as uint16 with RescaleSlope 0.1: 0.1 ms resolution, as scanners export them
                write_dicom_series(vol * 10.0, os.path.join(sdir, name), (dz, dy, dx), patient_id=subject,
                                   series_description=name.upper(), origin=(-20.0, -30.0, -10.0),
                                   extra={"RescaleSlope": 0.1})
            else:
                _as_nifti(vol, reference, os.path.join(sdir, f"{name}.nii.gz"))
        rep = slices // 2
        meta_ml[subject] = {"pixel_spacing": [dy, dx], "slice_thickness": dz, "rows": rows, "columns": cols,
                            "slice": rep}
        meta_stats[subject] = [{"slice": k, "pixel_spacing": [dy, dx], "slice_thickness": dz, "rows": rows,
                                "columns": cols} for k in range(slices)]
        truth[subject] = {
            TISSUES[t]: {**_analytic(g[part], last - first, dz), "t1rho_ms": T1RHO_MS[t], "t2_ms": T2_MS[t]}
            for t, part in ((1, "femur"), (2, "tibia"), (3, "patella"))
        }
    for name, data in (("metadata_for_ml.json", meta_ml), ("metadata_for_stats.json", meta_stats),
                       ("truth.json", {"spacing_mm": [dz, dy, dx], "map_noise_sd": map_noise_sd,
                                       "tissues": {str(k): v for k, v in TISSUES.items()}, "subjects": truth})):
        with open(os.path.join(out, name), "w") as fh:
            json.dump(data, fh, indent=1)
    return {"task": "knee", "out": out, "cases": cases, "size": [rows, cols], "slices": slices,
            "spacing_mm": [dz, dy, dx], "subjects": sorted(meta_ml), "tissues": TISSUES}


__all__ = ["TISSUES", "write_knee_phantoms"]
