"""REFUGE phantoms: fundus-like crops with a known optic-cup ellipse and seven slightly disagreeing raters.

Writes Medical-SAM2's REFUGE layout exactly (see ``sam2tune.data.refuge``), plus cup and disc masks per rater:

```
<out>/REFUGE/Training-400/T0001/T0001_cropped.jpg, T0001_seg_cup_{1..7}_cropped.jpg, T0001_seg_disc_{1..7}_cropped.jpg
<out>/REFUGE/Test-400/V0001/...
<out>/refuge_phantom_truth.json    true cup/disc ellipses per case (outside REFUGE/, so readers never see it)
```
"""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image
from scipy import ndimage

NUM_RATERS = 7
TRUTH_FILE = "refuge_phantom_truth.json"


def ellipse_radius(
    shape: tuple[int, int], center: tuple[float, float], axes: tuple[float, float], angle: float
) -> np.ndarray:
    """(H, W) map of normalised elliptic radius: < 1 inside the ellipse (center/axes as (row, col), angle in rad)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    dr, dc = rows - center[0], cols - center[1]
    cos, sin = np.cos(angle), np.sin(angle)
    u = dr * cos + dc * sin  # along the first axis
    v = -dr * sin + dc * cos  # along the second axis
    return np.sqrt((u / axes[0]) ** 2 + (v / axes[1]) ** 2)


def ellipse_mask(shape: tuple[int, int], ellipse: dict) -> np.ndarray:
    """Ellipse dict {"center": (r, c), "axes": (a, b), "angle": rad} -> bool (H, W) mask of its inside."""
    return ellipse_radius(shape, tuple(ellipse["center"]), tuple(ellipse["axes"]), ellipse["angle"]) <= 1.0


def _soft(radius: np.ndarray, width: float) -> np.ndarray:
    """Soft inside-ness in [0, 1], 0.5 on the ellipse border (so the truth sits where the visible edge is)."""
    return 1.0 / (1.0 + np.exp(np.clip((radius - 1.0) / width, -50, 50)))


def _random_geometry(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[dict, dict]:
    """Disc and cup ellipses; the cup lies inside the disc and has a radius >= ~8 % of the image's short side."""
    h, w = shape
    r0 = min(h, w)
    disc_center = (h / 2 + rng.uniform(-0.08, 0.08) * h, w / 2 + rng.uniform(-0.08, 0.08) * w)
    disc_a = r0 * rng.uniform(0.26, 0.32)
    disc_axes = (disc_a, disc_a * rng.uniform(0.85, 1.0))
    cup_a = disc_a * rng.uniform(0.45, 0.6)
    cup_axes = (cup_a, cup_a * rng.uniform(0.75, 1.0))
    # slack between the cup's long axis and the disc's short axis bounds the cup offset: the cup stays in the disc
    slack = 0.45 * (min(disc_axes) - max(cup_axes))
    phi = rng.uniform(0, 2 * np.pi)
    off = rng.uniform(0, slack)
    cup_center = (disc_center[0] + off * np.sin(phi), disc_center[1] + off * np.cos(phi))
    disc = {"center": list(disc_center), "axes": list(disc_axes), "angle": float(rng.uniform(0, np.pi))}
    cup = {"center": list(cup_center), "axes": list(cup_axes), "angle": float(rng.uniform(0, np.pi))}
    return disc, cup


def _vessels(rng: np.random.Generator, shape: tuple[int, int], origin: tuple[float, float]) -> np.ndarray:
    """(H, W) float in [0, 1]: a few dark curved vessels radiating from ``origin``, thinning as they go."""
    h, w = shape
    r0 = min(h, w)
    canvas = np.zeros(shape, dtype=np.float32)
    rows, cols = np.mgrid[0:h, 0:w]
    n = int(rng.integers(5, 9))
    base = rng.uniform(0, 2 * np.pi)
    for k in range(n):
        theta = base + 2 * np.pi * k / n + rng.uniform(-0.3, 0.3)
        bend = rng.uniform(-0.7, 0.7)
        wiggle, phase = rng.uniform(0.02, 0.08), rng.uniform(0, 2 * np.pi)
        length = r0 * rng.uniform(0.6, 1.0)
        width0 = r0 * rng.uniform(0.008, 0.02)
        start = rng.uniform(0.03, 0.08)  # vessels leave from inside the cup, not from one point
        for t in np.linspace(start, 1.0, 200):
            # curvature grows with distance, like vessels arching away from the disc; plus a gentle wiggle
            ang = theta + bend * t**2 + wiggle * np.sin(12 * t + phase)
            r, c = origin[0] + t * length * np.sin(ang), origin[1] + t * length * np.cos(ang)
            rad = width0 * (1.0 - 0.6 * t)
            lo_r, hi_r = int(max(r - rad - 1, 0)), int(min(r + rad + 2, h))
            lo_c, hi_c = int(max(c - rad - 1, 0)), int(min(c + rad + 2, w))
            if lo_r >= hi_r or lo_c >= hi_c:
                continue
            win = (slice(lo_r, hi_r), slice(lo_c, hi_c))
            inside = (rows[win] - r) ** 2 + (cols[win] - c) ** 2 <= rad**2
            canvas[win] = np.maximum(canvas[win], inside)
    return ndimage.gaussian_filter(canvas, 0.8)


def render_fundus(rng: np.random.Generator, shape: tuple[int, int], disc: dict, cup: dict) -> np.ndarray:
    """Disc/cup ellipses -> uint8 (H, W, 3) fundus-like crop: red-orange retina, bright disc, paler cup, vessels."""
    h, w = shape
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    # uneven illumination: a random linear gradient times a vignette, as in real fundus photographs
    g = rng.uniform(-1, 1, size=2)
    grad = 1.0 + 0.15 * (g[0] * (rows / h - 0.5) + g[1] * (cols / w - 0.5))
    rr = np.hypot(rows / h - 0.5, cols / w - 0.5) / np.sqrt(0.5)
    light = grad * (1.0 - 0.35 * rr**2)
    retina = np.array([0.55, 0.22, 0.08]) * rng.uniform(0.85, 1.1)
    img = retina[None, None, :] * light[..., None]
    disc_in = _soft(ellipse_radius(shape, tuple(disc["center"]), tuple(disc["axes"]), disc["angle"]), 0.06)
    cup_in = _soft(ellipse_radius(shape, tuple(cup["center"]), tuple(cup["axes"]), cup["angle"]), 0.04)
    img = img + disc_in[..., None] * np.array([0.33, 0.33, 0.2]) * light[..., None]
    img = img + cup_in[..., None] * np.array([0.12, 0.2, 0.25])
    vessels = _vessels(rng, shape, (cup["center"][0], cup["center"][1]))
    img = img * (1.0 - vessels[..., None] * np.array([0.35, 0.6, 0.6]))  # vessels: darker, redder
    img = img + rng.normal(0, 0.02, size=img.shape)
    img = ndimage.gaussian_filter(img, sigma=(0.6, 0.6, 0))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def _rater_ellipse(rng: np.random.Generator, ellipse: dict) -> dict:
    """One rater's outline of an ellipse: axes +-5 %, centre +-1.5 px, angle +-5 degrees."""
    return {
        "center": [c + rng.uniform(-1.5, 1.5) for c in ellipse["center"]],
        "axes": [a * (1 + rng.uniform(-0.05, 0.05)) for a in ellipse["axes"]],
        "angle": ellipse["angle"] + np.deg2rad(rng.uniform(-5, 5)),
    }


def _save_mask(path: str, mask: np.ndarray) -> None:
    """Bool (H, W) -> grey JPEG 0/255, as REFUGE ships its rater masks (hence readers threshold at 127)."""
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(path, quality=95)


def _shape(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``size`` -> (H, W): an int is square."""
    shape = (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)
    if len(shape) != 2 or min(shape) < 32:
        raise ValueError(f"size must be an int or (height, width), each >= 32, got {size!r}.")
    return shape  # type: ignore[return-value]


def write_refuge_case(case_dir: str, case_id: str, rng: np.random.Generator, shape: tuple[int, int]) -> dict:
    """Write one case folder (image + 7 cup + 7 disc rater masks) -> its truth {"disc": ellipse, "cup": ellipse}."""
    os.makedirs(case_dir, exist_ok=True)
    disc, cup = _random_geometry(rng, shape)
    Image.fromarray(render_fundus(rng, shape, disc, cup), mode="RGB").save(
        os.path.join(case_dir, f"{case_id}_cropped.jpg"), quality=92
    )
    for rater in range(1, NUM_RATERS + 1):
        for name, ellipse in (("cup", cup), ("disc", disc)):
            mask = ellipse_mask(shape, _rater_ellipse(rng, ellipse))
            _save_mask(os.path.join(case_dir, f"{case_id}_seg_{name}_{rater}_cropped.jpg"), mask)
    return {"disc": disc, "cup": cup}


def write_refuge_phantoms(out: str, cases: int = 8, seed: int = 0, size: int | tuple[int, int] = 256) -> dict:
    """Write ``cases`` REFUGE phantom cases under ``out`` (about 75 % Training-400, 25 % Test-400) -> summary dict.

    ``size`` is the image side (int) or (height, width). Summary keys: task, root, train_dir, test_dir,
    train_ids, test_ids, num_raters, image_shape, truth_file (JSON with each case's true ellipses).
    """
    if cases < 1:
        raise ValueError(f"cases must be >= 1, got {cases}.")
    shape = _shape(size)
    n_test = max(2, int(round(cases * 0.25))) if cases >= 4 else cases // 2
    root = os.path.join(os.fspath(out), "REFUGE")
    dirs = {"train": os.path.join(root, "Training-400"), "test": os.path.join(root, "Test-400")}
    ids = {
        "train": [f"T{i:04d}" for i in range(1, cases - n_test + 1)],
        "test": [f"V{i:04d}" for i in range(1, n_test + 1)],
    }
    rng = np.random.default_rng(seed)
    truth: dict[str, dict] = {}
    for split in ("train", "test"):
        os.makedirs(dirs[split], exist_ok=True)  # Test-400 exists even when empty, as in the real layout
        for case_id in ids[split]:
            truth[case_id] = write_refuge_case(os.path.join(dirs[split], case_id), case_id, rng, shape)
    truth_file = os.path.join(os.fspath(out), TRUTH_FILE)
    with open(truth_file, "w") as f:
        json.dump({"image_shape": list(shape), "cases": truth}, f, indent=1)
    return {
        "task": "refuge",
        "root": root,
        "train_dir": dirs["train"],
        "test_dir": dirs["test"],
        "train_ids": ids["train"],
        "test_ids": ids["test"],
        "num_raters": NUM_RATERS,
        "image_shape": list(shape),
        "truth_file": truth_file,
    }
