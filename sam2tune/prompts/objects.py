"""Per-slice object prompts for SAM2 memory propagation, built on the one box and click rule of prompts.simulate."""

from __future__ import annotations

import numpy as np

from sam2tune.networks.propagator import ObjectPrompt
from sam2tune.prompts.simulate import RngLike, mask_to_box, sample_points

PROMPT_MODES = ("box", "points", "box+points", "mask")


def object_prompt(mask: np.ndarray, k: int, mode: str = "box", jitter: float = 0.0, rng: RngLike = None) -> ObjectPrompt:
    """Binary slice mask (H, W) -> ObjectPrompt on slice ``k``.

    Args:
        mask: the object's mask on slice ``k`` (H, W), nonzero = object; must not be empty.
        k: the slice index the prompt belongs to.
        mode: "box" (tight inclusive box, ``mask_to_box``), "points" (one positive click at the pixel farthest from
            the mask border, ``sample_points(center=True)``), "box+points" (both) or "mask" (the mask itself).
        jitter: box jitter as a fraction of the box extent (``mask_to_box``); 0 = tight.
        rng: generator or seed for the jitter.

    Returns:
        The prompt, in the slice's pixel coordinates (x = column, y = row) — the same box and click that the 2D
        bundles' ``SimulatePromptsd`` gives for the same mask.

    Raises:
        ValueError: for an unknown ``mode`` or an empty mask.
    """
    if mode not in PROMPT_MODES:
        raise ValueError(f"Unknown prompt mode {mode!r}: choose one of {PROMPT_MODES}.")
    if not np.any(mask):
        raise ValueError(f"The mask on slice {k} is empty: an object can only be prompted where it is present.")
    if mode == "mask":
        return ObjectPrompt(k, mask=np.asarray(mask).astype(np.float32))
    box = mask_to_box(mask, jitter, rng).tolist() if mode in ("box", "box+points") else None
    points = labels = None
    if mode in ("points", "box+points"):
        coords, _ = sample_points(mask, 1, 0, center=True)
        points, labels = coords.tolist(), [1]
    return ObjectPrompt(k, box=box, points=points, point_labels=labels)


__all__ = ["PROMPT_MODES", "object_prompt"]
