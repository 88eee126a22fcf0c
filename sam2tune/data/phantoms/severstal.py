"""Severstal phantoms: steel-strip-like textures with pits, cracks, scratches and patches of known masks.

Writes Kaggle's Severstal layout exactly (see ``sam2tune.data.severstal``):

```
<out>/train.csv               ImageId,ClassId,EncodedPixels   (RLE 1-based, column-major; rows only for defects present)
<out>/train_images/<id>.jpg   grey steel texture, 1600 x 256 by default (``size`` = H or (H, W) for smaller tests)
```

Classes by construction: 1 pits (clusters of small dark dots), 2 cracks (short thin near-vertical dark lines),
3 scratches (long bright diagonal streaks), 4 patches (large dark irregular blobs). Each image has one or two
classes; every fifth image is defect-free (it has a file but no row, as in the real data).
"""

from __future__ import annotations

import csv
import os

import numpy as np
from PIL import Image
from scipy import ndimage

from sam2tune.data.severstal import CLASS_IDS, CSV_NAME, IMAGE_DIR, IMAGE_SHAPE, rle_encode


def _texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float in [0, 1]: rolled-steel grey with streaks along the rolling direction (x) and fine grain."""
    h, w = shape
    streaks = ndimage.gaussian_filter(rng.normal(0, 1, (h, w)), sigma=(0.6, max(2.0, w / 40)))
    grain = ndimage.gaussian_filter(rng.normal(0, 1, (h, w)), sigma=0.8)
    shade = np.linspace(rng.uniform(-0.06, 0.0), rng.uniform(0.0, 0.06), w)[None, :]  # uneven lighting across the strip
    img = rng.uniform(0.45, 0.6) + 0.05 * streaks / (streaks.std() + 1e-6) + 0.02 * grain / (grain.std() + 1e-6) + shade
    return np.clip(img, 0, 1)


def _pits(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    mask = np.zeros(shape, bool)
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.1, 0.9) * w
    rows, cols = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(4, 9))):
        r = max(1.5, rng.uniform(0.02, 0.04) * h)
        y, x = cy + rng.normal(0, 0.08 * h), cx + rng.normal(0, 0.03 * w)
        mask |= (rows - y) ** 2 + (cols - x) ** 2 <= r**2
    return mask


def _line(shape: tuple[int, int], p0: tuple[float, float], p1: tuple[float, float], width: float) -> np.ndarray:
    """Bool mask of the segment p0-p1 ((row, col) points) thickened to `width` pixels."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    d = np.array(p1, float) - np.array(p0, float)
    t = np.clip(((rows - p0[0]) * d[0] + (cols - p0[1]) * d[1]) / max(float(d @ d), 1e-9), 0, 1)
    dist = np.hypot(rows - (p0[0] + t * d[0]), cols - (p0[1] + t * d[1]))
    return dist <= width / 2


def _cracks(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    mask = np.zeros(shape, bool)
    x0 = rng.uniform(0.1, 0.9) * w
    for _ in range(int(rng.integers(1, 3))):
        x = x0 + rng.uniform(-0.04, 0.04) * w
        y0, y1 = rng.uniform(0.05, 0.35) * h, rng.uniform(0.6, 0.95) * h
        mask |= _line(shape, (y0, x), (y1, x + rng.uniform(-0.03, 0.03) * w), max(2.0, 0.03 * h))
    return mask


def _scratch(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    x0 = rng.uniform(0.05, 0.6) * w
    length = rng.uniform(0.2, 0.35) * w
    y0, y1 = rng.uniform(0.1, 0.4) * h, rng.uniform(0.6, 0.9) * h
    return _line(shape, (y0, x0), (y1, x0 + length), max(2.0, 0.05 * h))


def _patch(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    blob = np.zeros(shape, float)
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.15, 0.85) * w
    ry, rx = rng.uniform(0.2, 0.35) * h, rng.uniform(0.05, 0.12) * w
    rows, cols = np.mgrid[0:h, 0:w]
    blob[((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1] = 1
    # ragged border: threshold a smoothed noise-perturbed ellipse
    noisy = ndimage.gaussian_filter(blob + 0.6 * rng.normal(0, 1, shape), sigma=max(1.0, 0.02 * h))
    return noisy > 0.5


_MAKERS = {1: _pits, 2: _cracks, 3: _scratch, 4: _patch}
# intensity change painted inside each class's mask (dark pits/cracks/patches, bright scratches)
_CONTRAST = {1: -0.35, 2: -0.3, 3: 0.3, 4: -0.2}


def make_severstal_image(
    rng: np.random.Generator, shape: tuple[int, int], classes: list[int]
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """One phantom: uint8 (H, W) image and {class id: bool (H, W) mask} for `classes` (masks never overlap)."""
    img = _texture(rng, shape)
    taken = np.zeros(shape, bool)
    masks = {}
    for cls in classes:
        mask = _MAKERS[cls](rng, shape) & ~taken  # Severstal pixels carry one class
        if not mask.any():
            continue
        taken |= mask
        masks[cls] = mask
        soft = ndimage.gaussian_filter(mask.astype(float), 0.7)
        img = img + _CONTRAST[cls] * soft * rng.uniform(0.85, 1.15)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), masks


def write_severstal_phantoms(
    out: str, cases: int = 20, seed: int = 0, size: int | tuple[int, int] | None = None
) -> dict:
    """Write `cases` phantom images + train.csv under `out` -> summary {"dataset_dir", "images", "rows", "per_class",
    ...}.

    size: image height H (width = 6.25 H, Severstal's aspect) or (H, W); default 256 x 1600.
    """
    if cases < 1:
        raise ValueError(f"cases must be >= 1, got {cases}.")
    if size is None:
        shape = IMAGE_SHAPE
    elif isinstance(size, int):
        shape = (size, int(round(size * IMAGE_SHAPE[1] / IMAGE_SHAPE[0])))
    else:
        shape = (int(size[0]), int(size[1]))
    if min(shape) < 16:
        raise ValueError(f"Severstal phantoms need at least 16 x 16 pixels, got size {shape} (H, W).")
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(out, IMAGE_DIR), exist_ok=True)
    rows, per_class = [], dict.fromkeys(CLASS_IDS, 0)
    for i in range(cases):
        image_id = f"{rng.integers(0, 16**9):09x}.jpg"  # Kaggle ids are 9 hex digits + .jpg
        defect_free = i % 5 == 4
        classes = (
            [] if defect_free else sorted(rng.choice(CLASS_IDS, size=int(rng.integers(1, 3)), replace=False).tolist())
        )
        img, masks = make_severstal_image(rng, shape, classes)
        # Severstal JPEGs are grey stored as 3 identical channels
        Image.fromarray(np.repeat(img[..., None], 3, axis=2)).save(os.path.join(out, IMAGE_DIR, image_id), quality=95)
        for cls, mask in masks.items():
            rows.append((image_id, cls, rle_encode(mask)))
            per_class[cls] += 1
    with open(os.path.join(out, CSV_NAME), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ImageId", "ClassId", "EncodedPixels"])
        writer.writerows(rows)
    return {
        "dataset_dir": os.path.abspath(out),
        "images": cases,
        "rows": len(rows),
        "defect_free_images": sum(1 for i in range(cases) if i % 5 == 4),
        "per_class": per_class,
        "shape_hw": list(shape),
    }
