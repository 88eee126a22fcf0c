"""Lung-nodule CT phantoms in the Medical Segmentation Decathlon layout (Task06_Lung), truth known by construction.

```
<out>/Task06_Lung/dataset.json
<out>/Task06_Lung/imagesTr/lung_XXX.nii.gz   CT in Hounsfield units (int16), axes (x, y, z)
<out>/Task06_Lung/labelsTr/lung_XXX.nii.gz   0 background, 1 nodule (uint8)
<out>/Task06_Lung/nodules.json               per nodule: case, shape, diameter_mm, centre voxel (the truth)
```

Each case is a body ellipse (soft tissue, +40 HU) holding two lungs (-850 HU) with 1-2 nodules (+30 HU):
spheres, or lobulated spheres (a sphere plus smaller overlapping spheres on its surface).
"""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np

TASK_DIR = "Task06_Lung"
SPACING_MM = (1.0, 1.0, 2.0)


def _ellipsoid(shape: tuple[int, int, int], center, radii_vox) -> np.ndarray:
    """Boolean ellipsoid of `radii_vox` (x, y, z voxels) centred at `center` in a volume of `shape`."""
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    dist = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii_vox, strict=True))
    return dist <= 1.0


def _nodule(shape, center, diameter_mm: float, lobulated: bool, rng: np.random.Generator) -> np.ndarray:
    """Boolean nodule mask: a sphere of `diameter_mm`, plus 3-4 surface lobes when `lobulated`."""
    radius = diameter_mm / 2.0
    mask = _ellipsoid(shape, center, [radius / s for s in SPACING_MM])
    if lobulated:
        for _ in range(int(rng.integers(3, 5))):
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            lobe_center = [c + 0.8 * radius * d / s for c, d, s in zip(center, direction, SPACING_MM, strict=True)]
            lobe_r = radius * rng.uniform(0.35, 0.55)
            mask |= _ellipsoid(shape, lobe_center, [lobe_r / s for s in SPACING_MM])
    return mask


def write_lung_nodule_phantoms(
    out: str,
    cases: int = 6,
    seed: int = 0,
    size: int = 64,
    slices: int = 24,
    diameters_mm: tuple[float, float] = (8.0, 16.0),
) -> dict:
    """Write `cases` CT volumes (size x size x slices) with 1-2 nodules each in the MSD layout -> summary dict."""
    if isinstance(size, tuple):  # make_phantoms.py --size HxW: the phantoms are square in-plane
        size = max(size)
    if cases < 1:
        raise ValueError(f"cases must be >= 1, got {cases}.")
    if size < 32 or slices < 8:
        raise ValueError(f"lung phantoms need size >= 32 and slices >= 8, got size={size}, slices={slices}.")
    rng = np.random.default_rng(seed)
    root = os.path.join(out, TASK_DIR)
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    affine = np.diag([*SPACING_MM, 1.0])
    shape = (size, size, slices)
    training, truth = [], []
    for i in range(cases):
        case = f"lung_{i + 1:03d}"
        body = _ellipsoid(shape, (size / 2, size / 2, slices / 2), (size * 0.47, size * 0.4, slices * 4))
        lungs = [
            _ellipsoid(shape, (size * cx, size * 0.5, slices / 2), (size * 0.17, size * 0.3, slices * 0.6))
            for cx in (0.3, 0.7)
        ]
        ct = np.full(shape, -1000.0)
        ct[body] = 40.0
        label = np.zeros(shape, dtype=np.uint8)
        for lung in lungs:
            ct[lung] = -850.0
        for k in range(int(rng.integers(1, 3))):
            lung = lungs[k % 2]
            diameter = float(rng.uniform(*diameters_mm))
            lobulated = bool(rng.random() < 0.5)
            # Centre well inside the lung (so a nodule stays in lung tissue), at a random height.
            r_vox = [diameter / 2 / s for s in SPACING_MM]
            cx = (0.3 if k % 2 == 0 else 0.7) * size + rng.uniform(-0.05, 0.05) * size
            cy = size * 0.5 + rng.uniform(-0.15, 0.15) * size
            cz = rng.uniform(r_vox[2] + 1, slices - r_vox[2] - 2)
            mask = _nodule(shape, (cx, cy, cz), diameter, lobulated, rng) & (lung | body)
            ct[mask] = 30.0
            label[mask] = 1
            truth.append({"case": case, "nodule": k, "shape": "lobulated" if lobulated else "spherical",
                          "diameter_mm": round(diameter, 2), "center_voxel": [round(cx, 2), round(cy, 2), round(cz, 2)],
                          "voxels": int(mask.sum())})
        ct += rng.normal(0.0, 20.0, shape)  # scanner noise
        nib.save(
            nib.Nifti1Image(np.round(ct).astype(np.int16), affine), os.path.join(root, "imagesTr", f"{case}.nii.gz")
        )
        nib.save(nib.Nifti1Image(label, affine), os.path.join(root, "labelsTr", f"{case}.nii.gz"))
        training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
    dataset = {
        "name": "Lung",
        "description": "sam2tune lung-nodule phantoms (MSD Task06_Lung layout)",
        "reference": "sam2tune",
        "licence": "CC-BY-SA 4.0",
        "release": "phantom",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "cancer"},
        "numTraining": cases,
        "numTest": 0,
        "training": training,
        "test": [],
    }
    with open(os.path.join(root, "dataset.json"), "w") as f:
        json.dump(dataset, f, indent=2)
    with open(os.path.join(root, "nodules.json"), "w") as f:
        json.dump(truth, f, indent=2)
    return {"root": root, "cases": cases, "nodules": len(truth), "shape": list(shape), "spacing_mm": list(SPACING_MM)}
