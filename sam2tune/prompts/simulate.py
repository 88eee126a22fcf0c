"""Simulate SAM prompts (boxes, clicks) from label masks.

Conventions shared by every function here:

- masks are *spatial* arrays without a channel axis: (H, W) for images, (D, H, W) for volumes; numpy arrays or
  torch tensors (converted to numpy, never modified in place).
- coordinates are pixel indices in reversed axis order, as SAM expects: (x, y) = (column, row) in 2D and
  (x, y, z) = (column, row, slice) in 3D.
- boxes are tight and inclusive: ``[x_min, y_min, x_max, y_max]`` are the first and last foreground columns/rows
  (the MedSAM / Medical-SAM2 convention); in 3D ``[x_min, y_min, z_min, x_max, y_max, z_max]``.
- point labels: 1 = positive, 0 = negative, -1 = padding (SAM's "not a point"), so that every sample has the same
  number of points and the default collate can stack them.
- ``rng`` may be a ``numpy.random.Generator``, a ``numpy.random.RandomState`` (what MONAI's ``Randomizable.R`` is),
  an int seed, or None (fresh entropy). Only methods that both generator kinds share are used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

RngLike = np.random.Generator | np.random.RandomState | int | None

POSITIVE, NEGATIVE, PADDING = 1.0, 0.0, -1.0


def as_numpy(x: Any) -> np.ndarray:
    """Convert any array-like to numpy.

    Args:
        x: a numpy array, torch tensor or MetaTensor (on any device, requiring grad or not), or a nested sequence.

    Returns:
        A numpy array of the same shape (a tensor is detached and copied to the CPU; numpy input is not copied).
    """
    if hasattr(x, "detach"):  # torch.Tensor / MetaTensor, possibly on GPU or requiring grad
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _as_rng(rng: RngLike) -> np.random.Generator | np.random.RandomState:
    """Normalise an rng argument; ints become seeded Generators so calls with the same seed repeat."""
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    return rng


def _binary(mask: Any) -> np.ndarray:
    """(…spatial) any dtype -> bool, foreground = nonzero."""
    return as_numpy(mask) != 0


def mask_to_box(mask: Any, jitter: float = 0.0, rng: RngLike = None) -> np.ndarray:
    """Tight, inclusive box of a binary mask: the first and last foreground column / row (/ slice).

    ``jitter`` moves each side independently by up to ``jitter`` x the box extent along that axis (uniform),
    the usual augmentation that teaches the model to tolerate sloppy boxes; the result is clipped to the image
    and stays ordered (min <= max).

    Args:
        mask: binary mask (H, W) or (D, H, W), nonzero = foreground.
        jitter: maximum move of each side as a fraction of the box extent; 0 = tight.
        rng: generator or seed for the jitter.

    Returns:
        float32 box (4,) ``[x_min, y_min, x_max, y_max]`` or (6,) ``[x_min, y_min, z_min, x_max, y_max, z_max]``;
        zeros when the mask is empty.
    """
    fg = _binary(mask)
    ndim = fg.ndim
    if not fg.any():
        return np.zeros(2 * ndim, dtype=np.float32)
    idx = np.nonzero(fg)
    lo = np.array([i.min() for i in idx][::-1], dtype=np.float64)  # reversed: x first
    hi = np.array([i.max() for i in idx][::-1], dtype=np.float64)
    if jitter > 0:
        gen = _as_rng(rng)
        extent = hi - lo + 1.0
        lo = lo + gen.uniform(-jitter, jitter, size=ndim) * extent
        hi = hi + gen.uniform(-jitter, jitter, size=ndim) * extent
        upper = np.array(fg.shape[::-1], dtype=np.float64) - 1.0
        lo, hi = np.clip(lo, 0.0, upper), np.clip(hi, 0.0, upper)
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    return np.concatenate([lo, hi]).astype(np.float32)


def _central_points(region: np.ndarray, k: int) -> np.ndarray:
    """Deterministic clicks: the region pixel farthest from its border, then farthest-point sampling of the interior.

    Returns int indices (k', ndim) in array order, k' <= k (fewer when the region has fewer pixels).
    """
    if k <= 0 or not region.any():
        return np.zeros((0, region.ndim), dtype=np.int64)
    # pad with background so the image edge counts as border (scipy measures distance to zeros inside the array
    # only): a mask cut by the image edge gets its click in the middle of the visible part
    edt = ndimage.distance_transform_edt(np.pad(region, 1, constant_values=False))
    edt = edt[tuple(slice(1, -1) for _ in range(region.ndim))][region]
    cand = np.argwhere(region)  # only foreground pixels (same C order as edt[region]): keeps 3D volumes cheap
    # the deepest pixel; on a plateau of equal depth (rectangles, ellipses) the one nearest the plateau's centroid
    top = np.flatnonzero(edt >= edt.max() - 1e-6)
    centre = cand[top].mean(0)
    first = int(top[np.argmin(((cand[top] - centre) ** 2).sum(1))])  # argmin: ties resolve the same way every run
    # later clicks: each as far as possible from the earlier ones, among pixels at least half as deep as the
    # first, so that several clicks spread over the object without hugging its border
    keep = edt >= 0.5 * edt[first]
    cand, first = cand[keep], int(np.count_nonzero(keep[:first]))
    picked = [cand[first]]
    nearest = np.sqrt(((cand - cand[first]) ** 2).sum(1))
    while len(picked) < min(k, len(cand)):
        best = int(np.argmax(nearest))
        if nearest[best] <= 0:
            break
        picked.append(cand[best])
        nearest = np.minimum(nearest, np.sqrt(((cand - cand[best]) ** 2).sum(1)))
    return np.array(picked, dtype=np.int64).reshape(-1, region.ndim)


def _random_points(region: np.ndarray, k: int, rng: np.random.Generator | np.random.RandomState) -> np.ndarray:
    """Up to k distinct random pixels of a bool region -> int indices (k', ndim) in array order."""
    idx = np.argwhere(region)
    if k <= 0 or len(idx) == 0:
        return np.zeros((0, region.ndim), dtype=np.int64)
    take = rng.choice(len(idx), size=min(k, len(idx)), replace=False)
    return idx[np.sort(take)]


def _negative_region(fg: np.ndarray, margin: float = 0.25, min_margin: int = 3) -> np.ndarray:
    """Background near the object (its box grown by ``margin`` x extent): negatives far away teach SAM nothing."""
    bg = ~fg
    if not fg.any():
        return bg
    idx = np.nonzero(fg)
    near = np.zeros_like(fg)
    sl = []
    for axis, i in enumerate(idx):
        grow = max(int(round(margin * (i.max() - i.min() + 1))), min_margin)
        sl.append(slice(max(int(i.min()) - grow, 0), min(int(i.max()) + grow + 1, fg.shape[axis])))
    near[tuple(sl)] = True
    region = bg & near
    return region if region.any() else bg  # a mask filling its whole box: fall back to any background


def sample_points(
    mask: Any, num_pos: int, num_neg: int, rng: RngLike = None, center: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Sample positive and negative clicks from a binary mask.

    Positives come from the foreground, negatives from the background near the object. ``center=True`` gives the
    deterministic clicks used for evaluation (first positive = the foreground point farthest from the mask border,
    by distance transform); otherwise points are uniform random. Missing points (tiny region) are padding:
    coords 0, label -1; an empty mask gives padding only.

    Args:
        mask: binary mask (H, W) or (D, H, W), nonzero = foreground.
        num_pos: positive clicks (>= 0).
        num_neg: negative clicks (>= 0).
        rng: generator or seed for the random clicks (unused with ``center=True``).
        center: deterministic clicks instead of random ones.

    Returns:
        (coords float32 (P, ndim) as x, y[, z]; labels float32 (P,)), P = num_pos + num_neg, positives first.

    Raises:
        ValueError: when `num_pos` or `num_neg` is negative.
    """
    if num_pos < 0 or num_neg < 0:
        raise ValueError(f"num_pos and num_neg must be >= 0, got {num_pos} and {num_neg}.")
    fg = _binary(mask)
    total = num_pos + num_neg
    coords = np.zeros((total, fg.ndim), dtype=np.float32)
    labels = np.full((total,), PADDING, dtype=np.float32)
    if not fg.any():  # nothing to prompt: negatives alone would describe no object
        return coords, labels
    gen = None if center else _as_rng(rng)
    neg_region = _negative_region(fg)
    groups = ((fg, num_pos, POSITIVE, 0), (neg_region, num_neg, NEGATIVE, num_pos))
    for region, k, value, start in groups:
        pts = _central_points(region, k) if center else _random_points(region, k, gen)
        coords[start : start + len(pts)] = pts[:, ::-1]  # array order (row, col) -> SAM order (x, y)
        labels[start : start + len(pts)] = value
    return coords, labels


def connected_instances(mask: Any) -> list[np.ndarray]:
    """Split a binary mask into its connected components.

    Components use full connectivity (8 in 2D, 26 in 3D) so that diagonal touches do not split one object.

    Args:
        mask: binary mask (H, W) or (D, H, W), nonzero = foreground.

    Returns:
        One bool mask of the same shape per component, in label order; empty for an empty mask.
    """
    fg = _binary(mask)
    structure = ndimage.generate_binary_structure(fg.ndim, fg.ndim)
    lab, n = ndimage.label(fg, structure=structure)
    return [lab == i for i in range(1, n + 1)]


def select_instance(mask: Any, rng: RngLike = None) -> np.ndarray:
    """Pick one connected component of a binary mask at random (``connected_instances``).

    Args:
        mask: binary mask (H, W) or (D, H, W), nonzero = foreground.
        rng: generator or seed.

    Returns:
        A bool mask of the same shape holding one component; all False for an empty mask.
    """
    parts = connected_instances(mask)
    if not parts:
        return _binary(mask)
    return parts[int(_as_rng(rng).choice(len(parts)))]


def select_class(label_map: Any, class_ids: Sequence[int], rng: RngLike = None) -> tuple[np.ndarray, int]:
    """Pick one of the classes present in a label map at random.

    Args:
        label_map: (H, W) or (D, H, W) map of class ids.
        class_ids: the label values that may be picked.
        rng: generator or seed.

    Returns:
        (bool mask of the picked class, its id); an all-False mask and -1 when none of `class_ids` is present.

    Raises:
        ValueError: when `class_ids` is empty.
    """
    lab = as_numpy(label_map)
    if len(class_ids) == 0:
        raise ValueError("class_ids is empty: give the label values that may be prompted, e.g. [1, 2, 3].")
    present = [int(c) for c in class_ids if np.any(lab == c)]
    if not present:
        return np.zeros(lab.shape, dtype=bool), -1
    chosen = present[int(_as_rng(rng).choice(len(present)))]
    return lab == chosen, chosen
