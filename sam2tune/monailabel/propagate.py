"""3D: carry a mask from the prompted slice through the volume, both directions.

`propagate_by_box_chaining` prompts each next slice with the box of the previous slice's mask. It is the
stand-in until `sam2tune.networks.propagator` (SAM2 memory-attention propagation, being written for the BTCV
bundle) lands; `propagate_volume` is the one call site to switch over.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sam2tune.monailabel.prompts import SlicePrompt

SlicePredictor = Callable[[int, SlicePrompt], np.ndarray]  # (slice k, prompt) -> probability (H, W)


def mask_box(mask: np.ndarray, margin: int = 2) -> np.ndarray | None:
    """Binary (H, W) -> xyxy box around it grown by `margin` pixels, or None when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    h, w = mask.shape
    return np.array(
        [max(xs.min() - margin, 0), max(ys.min() - margin, 0), min(xs.max() + 1 + margin, w), min(ys.max() + 1 + margin, h)],
        np.float32,
    )


def propagate_by_box_chaining(
    predict: SlicePredictor, depth: int, start: int, start_mask: np.ndarray, threshold: float = 0.5, skip: set[int] | None = None
) -> dict[int, np.ndarray]:
    """From slice `start` (mask (H, W)) go up and down, each slice prompted by the last mask's box -> {k: mask (H, W)}.

    Stops in a direction at the volume end or at the first empty prediction; slices in `skip` (user-prompted)
    keep their own result and re-seed the chain.
    """
    skip = skip or set()
    out: dict[int, np.ndarray] = {}
    for step in (1, -1):
        prev = start_mask
        k = start + step
        while 0 <= k < depth:
            if k in skip:
                k += step
                continue
            box = mask_box(prev)
            if box is None:
                break
            mask = predict(k, SlicePrompt(box=box)) >= threshold
            if not mask.any():
                break
            out[k] = mask
            prev = mask
            k += step
    return out


def propagate_volume(
    predict: SlicePredictor, depth: int, start: int, start_mask: np.ndarray, threshold: float = 0.5, skip: set[int] | None = None
) -> dict[int, np.ndarray]:
    """Propagate the prompted slice's mask through the volume both ways -> {k: mask (H, W)} for the other slices."""
    return propagate_by_box_chaining(predict, depth, start, start_mask, threshold, skip)
