"""BTCV-like abdominal CT phantoms in the original NIfTI layout (and optionally the converted slice layout).

```
<out>/img/imgXXXX.nii.gz     CT in Hounsfield units (int16), axes (x, y, z), RAS affine with spacing
<out>/label/labelXXXX.nii.gz 0 background, 1..13 BTCV organs (uint8)
<out>/dataset_0.json         MONAI's datalist: "training", "validation" (and with test_fraction, a labelled "test")
                             lists of {"image", "label"}
<out>/{Training,Test}/image/<case>/<i>.jpg + mask/<case>/<i>.npy   with slices=True (windowed -175..250 HU)
```

Each case: air (-1000 HU) around a body ellipse (fat -100 HU rim, fat-streaked soft tissue -60 HU inside), with 13
organs as smooth, randomly deformed ellipsoids at plausible positions, each with its own mean HU, plus Gaussian noise.
The inside is fatty (as intra-abdominal fat is around most organs) rather than 40 HU soft tissue: at 40 HU the
oesophagus (45), adrenals (55-58), stomach (20) and gallbladder (5) were within noise of their surroundings, so the
phantoms asked the tracker to follow invisible organs.
"""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter

from sam2tune.data.btcv import BTCV_LABELS

# organ id -> (centre x, y, z as fractions of the volume; radii x, y, z as fractions; mean HU). y = 0 is anterior.
# Painted in this order, so small organs drawn later stay visible inside larger ones' neighbourhood.
_ORGANS: dict[int, tuple[float, float, float, float, float, float, float]] = {
    6: (0.31, 0.45, 0.62, 0.17, 0.16, 0.26, 65),  # liver
    1: (0.73, 0.56, 0.60, 0.08, 0.11, 0.18, 110),  # spleen
    7: (0.62, 0.36, 0.62, 0.10, 0.09, 0.16, 20),  # stomach
    2: (0.30, 0.67, 0.40, 0.07, 0.09, 0.17, 150),  # right kidney
    3: (0.70, 0.67, 0.42, 0.07, 0.09, 0.17, 165),  # left kidney
    11: (0.56, 0.52, 0.42, 0.11, 0.035, 0.09, 90),  # pancreas
    4: (0.36, 0.36, 0.48, 0.05, 0.05, 0.10, 5),  # gallbladder
    8: (0.54, 0.64, 0.50, 0.035, 0.035, 0.48, 210),  # aorta
    9: (0.45, 0.62, 0.50, 0.035, 0.035, 0.42, 125),  # inferior vena cava
    10: (0.50, 0.48, 0.55, 0.09, 0.025, 0.05, 180),  # portal and splenic veins
    5: (0.52, 0.60, 0.86, 0.03, 0.03, 0.14, 45),  # esophagus
    12: (0.41, 0.58, 0.68, 0.025, 0.03, 0.07, 55),  # right adrenal gland
    13: (0.62, 0.58, 0.68, 0.025, 0.03, 0.07, 58),  # left adrenal gland
}
WINDOW_HU = (-175.0, 250.0)
INNER_HU = -60.0  # fat-streaked abdominal soft tissue between the organs


def _smooth_blob(shape, centre, radii, rng: np.random.Generator, roughness: float = 0.25) -> np.ndarray:
    """Boolean ellipsoid (voxel centre / radii, axes x, y, z) with its surface pushed by a smooth random field."""
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    dist = sum(((g - c) / max(r, 1.5)) ** 2 for g, c, r in zip(grids, centre, radii, strict=True))
    field = gaussian_filter(rng.normal(size=shape), sigma=[max(s / 8, 1.0) for s in shape])
    field /= np.abs(field).max() + 1e-6
    return dist <= 1.0 + roughness * field


def _case(
    size: int, slices: int, rng: np.random.Generator, organs: tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One phantom -> (HU volume (x, y, z) int16, label (x, y, z) uint8)."""
    shape = (size, size, slices)
    ct = np.full(shape, -1000.0, np.float32)
    body = _smooth_blob(
        shape, (size * 0.5, size * 0.52, slices / 2), (size * 0.46, size * 0.38, slices * 10), rng, 0.05
    )
    inner = _smooth_blob(
        shape, (size * 0.5, size * 0.52, slices / 2), (size * 0.42, size * 0.34, slices * 10), rng, 0.05
    )
    ct[body] = -100.0
    ct[inner] = INNER_HU
    label = np.zeros(shape, np.uint8)
    dims = np.asarray(shape, np.float64)
    for organ, (cx, cy, cz, rx, ry, rz, hu) in _ORGANS.items():
        if organs is not None and organ not in organs:
            continue
        centre = (np.array([cx, cy, cz]) + rng.uniform(-0.025, 0.025, 3)) * dims
        radii = np.array([rx, ry, rz]) * dims * rng.uniform(0.85, 1.15, 3)
        mask = _smooth_blob(shape, centre, radii, rng) & inner
        label[mask] = organ
        ct[mask] = hu + rng.normal(0, 5)
    ct = gaussian_filter(ct, 0.6) + rng.normal(0, 12, shape)  # partial-volume blur + quantum noise
    return np.clip(np.rint(ct), -1024, 3071).astype(np.int16), label


def _write_slices(out: str, part: str, case: str, ct: np.ndarray, label: np.ndarray) -> None:
    """One case in the converted slice layout: windowed 8-bit JPEG + label .npy per axial slice."""
    from PIL import Image

    img_dir, mask_dir = os.path.join(out, part, "image", case), os.path.join(out, part, "mask", case)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(mask_dir, exist_ok=True)
    lo, hi = WINDOW_HU
    scaled = np.clip((ct.astype(np.float32) - lo) / (hi - lo), 0, 1) * 255
    for k in range(ct.shape[2]):
        # slice arrays are (rows = y, columns = x), the same orientation sam2tune.io.volumes gives NIfTI slices
        Image.fromarray(np.rint(scaled[:, :, k].T).astype(np.uint8)).save(os.path.join(img_dir, f"{k}.jpg"), quality=95)
        np.save(os.path.join(mask_dir, f"{k}.npy"), label[:, :, k].T.astype(np.uint8))


def write_btcv_phantoms(
    out: str,
    cases: int = 6,
    seed: int = 0,
    size: int | tuple[int, int] = 64,
    depth: int = 24,
    val_fraction: float = 0.34,
    slices: bool = False,
    organs: list[int] | None = None,
    test_fraction: float = 0.0,
) -> dict:
    """Write `cases` CT volumes (size x size x depth) with 13 organs (or only `organs`) in BTCV's NIfTI layout
    -> summary dict.

    Cases are train, then `val_fraction` validation, then `test_fraction` labelled held-out test cases (dataset_0.json
    "test"; the real BTCV's test images are unlabelled). Test cases are not written to the slice layout, whose Test
    folder is the validation split.
    """
    if isinstance(size, tuple):  # make_phantoms.py --size HxW: phantoms are square in-plane
        size = max(size)
    if cases < 2:
        raise ValueError(f"cases must be >= 2 (training + validation), got {cases}.")
    if size < 32 or depth < 8:
        raise ValueError(f"size must be >= 32 and depth >= 8 voxels, got size={size}, depth={depth}.")
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(out, "img"), exist_ok=True)
    os.makedirs(os.path.join(out, "label"), exist_ok=True)
    # ~350 mm field of view in-plane and ~2.5 mm slices at 64 px / 24 slices (BTCV: 0.6-0.9 mm, 2.5-5 mm)
    spacing = (350.0 / size, 350.0 / size, 60.0 / depth)
    affine = np.diag([*spacing, 1.0])
    n_test = round(cases * test_fraction) if test_fraction > 0 else 0
    n_val = max(1, round(cases * val_fraction))
    if cases - n_test - n_val < 1:
        raise ValueError(f"cases={cases} leaves no training case after {n_val} val and {n_test} test cases.")
    n_train = cases - n_val - n_test
    entries = []
    for i in range(cases):
        case = f"{i + 1:04d}"
        ct, label = _case(size, depth, rng, tuple(organs) if organs else None)
        img_rel, lab_rel = f"img/img{case}.nii.gz", f"label/label{case}.nii.gz"
        nib.save(nib.Nifti1Image(ct, affine), os.path.join(out, img_rel))
        nib.save(nib.Nifti1Image(label, affine), os.path.join(out, lab_rel))
        part = "Training" if i < n_train else "Test"
        if slices and i < n_train + n_val:
            _write_slices(out, part, f"img{case}", ct, label)
        entries.append({"image": img_rel, "label": lab_rel})
    datalist = {
        "description": "BTCV-like phantoms (sam2tune)",
        "labels": {"0": "background"} | {str(k): v for k, v in BTCV_LABELS.items()},
        "training": entries[:n_train],
        "validation": entries[n_train : n_train + n_val],
    }
    if n_test:
        datalist["test"] = entries[n_train + n_val :]
    with open(os.path.join(out, "dataset_0.json"), "w") as f:
        json.dump(datalist, f, indent=2)
    return {"task": "btcv", "out": out, "cases": cases, "train": n_train, "val": n_val, "test": n_test,
            "shape_xyz": [size, size, depth], "spacing_mm": list(spacing), "slice_layout": slices}


__all__ = ["write_btcv_phantoms"]
