"""Per-slice object prompts for SAM2 memory propagation, built on the one box and click rule of prompts.simulate."""

from __future__ import annotations

import numpy as np
import torch

from sam2tune.networks.propagator import ObjectPrompt
from sam2tune.prompts.simulate import RngLike, mask_to_box, sample_points

PROMPT_MODES = ("box", "points", "box+points", "mask")


def object_prompt(
    mask: np.ndarray, k: int, mode: str = "box", jitter: float = 0.0, rng: RngLike = None
) -> ObjectPrompt:
    """Build the ObjectPrompt of an object on slice ``k`` from its binary slice mask (H, W).

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


def add_click(prompt: ObjectPrompt | None, k: int, xy: np.ndarray, label: float,
              keep_mask: bool = True, mask_logits: torch.Tensor | None = None) -> ObjectPrompt:
    """A slice's prompt (or None) + one corrective click -> the prompt with the click after its earlier clicks.

    Args:
        prompt: the object's prompt on slice ``k`` so far, or None when the slice has none yet.
        k: the slice index of the new prompt.
        xy: the click (x, y) = (column, row), e.g. from ``error_click``.
        label: 1 = positive click, 0 = negative click.
        keep_mask: keep the prompt's mask (SAM2 then conditions on the mask and ignores the points); False drops it
            so the clicks take effect.
        mask_logits: (h, w) low-res logits of the current prediction on slice ``k``, fed back with the clicks as
            SAM's mask prompt (SAM2's video predictor does this on every click); the mask is then dropped.

    Returns:
        A new ObjectPrompt on slice ``k``: the earlier box (and mask when kept), earlier clicks, then the new click
        (and the fed-back logits).
    """
    points = [list(map(float, p)) for p in (prompt.points or [])] if prompt is not None else []
    labels = [int(v) for v in (prompt.point_labels or [])] if prompt is not None else []
    mask = prompt.mask if prompt is not None and keep_mask and mask_logits is None else None
    return ObjectPrompt(k, box=None if prompt is None else prompt.box, points=points + [[float(xy[0]), float(xy[1])]],
                        point_labels=labels + [int(label)], mask=mask, mask_logits=mask_logits)


def click_as_key(prompts: list[ObjectPrompt], k: int, xy: np.ndarray, label: float,
                 mask_logits: torch.Tensor | None = None) -> list[ObjectPrompt]:
    """An object's prompts + a corrective click on slice ``k`` -> prompts whose first one (the key) is slice ``k``.

    The 3D click protocol re-propagates from the corrected slice: SAM2 conditions on the first prompt of the list.

    Args:
        prompts: the object's prompts, the key first.
        k: the corrected slice.
        xy: the click (x, y) = (column, row).
        label: 1 = positive click, 0 = negative click.
        mask_logits: (h, w) low-res logits of the current prediction on slice ``k``, fed back (``add_click``).

    Returns:
        A new list: slice ``k``'s prompt with the click added (``add_click``, mask dropped so the clicks count),
        then the object's prompts on other slices in their order.
    """
    old = next((p for p in prompts if int(p.slice) == k), None)
    return [add_click(old, k, xy, label, keep_mask=False, mask_logits=mask_logits)] + [
        p for p in prompts if int(p.slice) != k]


__all__ = ["PROMPT_MODES", "add_click", "click_as_key", "object_prompt"]
