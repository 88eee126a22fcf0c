"""Corrective clicks from the error between a prediction and the truth: the interactive-segmentation click rule.

One rule serves evaluation, training and the app's baselines:

- ``error_click`` (deterministic, evaluation): the largest connected error region (false negative or false positive,
  by pixel count; ties go to the deeper region), clicked at its pixel farthest from the region's border (distance
  transform, image edge counting as border) — the RITM / SimpleClick protocol. A missed region gives a positive click,
  a false-positive region a negative one.
- ``sample_error_clicks`` (batched torch, training): ``"uniform"`` draws one pixel uniformly from the error pixels
  with SAM2's own ``sam2.modeling.sam2_utils.sample_random_points_from_errors`` (what SAM2 trains with);
  ``"center"`` applies ``error_click`` to every sample (the evaluation rule, deterministic).
- two simulated users for judging the app's suggestion, both answering with the true label at the clicked pixel:
  ``"suggest"`` clicks where ``sam2tune.prompts.suggest_click`` points (no ground truth used for the position), and
  ``"boundary"`` clicks a random pixel of the predicted mask's border (a baseline).

Coordinates follow sam2tune.prompts.simulate: (x, y) = (column, row); labels 1 = positive, 0 = negative.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import ndimage

from sam2tune.prompts.simulate import NEGATIVE, POSITIVE, _central_points, as_numpy

CLICK_MODES = ("uniform", "center", "suggest", "boundary")


def error_click(pred: Any, target: Any) -> tuple[np.ndarray, float] | None:
    """Prediction and truth (H, W) -> (click (2,) float32 xy, label 1.0 / 0.0), or None when they agree.

    Args:
        pred: predicted mask (H, W), nonzero = foreground (numpy or torch).
        target: true mask (H, W), nonzero = foreground.

    Returns:
        The click at the pixel farthest from the border of the largest error region (positive when that region is a
        miss, negative when it is a false positive), or None when there is no error.

    Raises:
        ValueError: when the two masks differ in shape or are not 2D.
    """
    p, t = as_numpy(pred) != 0, as_numpy(target) != 0
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"error_click takes two (H, W) masks of one shape, got {p.shape} and {t.shape}.")
    best: tuple[int, float, np.ndarray, float] | None = None  # (area, depth, region, label)
    structure = ndimage.generate_binary_structure(2, 2)
    for err, label in ((t & ~p, POSITIVE), (p & ~t, NEGATIVE)):
        lab, n = ndimage.label(err, structure=structure)
        if not n:
            continue
        areas = np.bincount(lab.ravel())[1:]
        for i in np.flatnonzero(areas == areas.max()):
            region = lab == i + 1
            depth = float(ndimage.distance_transform_edt(np.pad(region, 1)).max())
            key = (int(areas[i]), depth)
            if best is None or key > best[:2]:
                best = (key[0], key[1], region, label)
    if best is None:
        return None
    row, col = _central_points(best[2], 1)[0]
    return np.array([col, row], np.float32), best[3]


def error_slice(pred: Any, target: Any) -> int | None:
    """Find the slice with the most wrong pixels: the one the 3D click protocol corrects next.

    The protocol corrects that slice with ``error_click`` and re-propagates from it.

    Args:
        pred: predicted mask (D, H, W), nonzero = foreground (numpy or torch).
        target: true mask (D, H, W), nonzero = foreground.

    Returns:
        The slice index (the first one on ties), or None when the masks agree.

    Raises:
        ValueError: when the two masks differ in shape or are not 3D.
    """
    p, t = as_numpy(pred) != 0, as_numpy(target) != 0
    if p.shape != t.shape or p.ndim != 3:
        raise ValueError(f"error_slice takes two (D, H, W) masks of one shape, got {p.shape} and {t.shape}.")
    wrong = (p != t).reshape(p.shape[0], -1).sum(1)
    return int(wrong.argmax()) if wrong.any() else None


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of a bool mask (H, W) that touch the background (its inner border)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def sample_error_clicks(
    pred: torch.Tensor, target: torch.Tensor, mode: str = "uniform"
) -> tuple[torch.Tensor, torch.Tensor]:
    """One corrective click per sample from the error of a batch of predictions.

    Args:
        pred: predicted masks (B, 1, H, W): logits (float, object where > 0) or bool masks; "suggest" needs logits.
        target: true masks (B, 1, H, W), bool.
        mode: "uniform" (SAM2's training sampler: a uniformly random error pixel, a negative click in the background
            when a sample is already perfect), "center" (``error_click``, deterministic; a perfect sample gets a
            padding click, label -1, which SAM ignores), "suggest" or "boundary" (simulated users, see module doc).

    Returns:
        (points (B, 1, 2) float32 xy, labels (B, 1) int32) on the device of ``target``.

    Raises:
        ValueError: for an unknown mode, masks that are not both (B, 1, H, W), or "suggest" with a bool prediction.
    """
    if mode not in CLICK_MODES:
        raise ValueError(f"click mode must be one of {CLICK_MODES}, got {mode!r}.")
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[1] != 1:
        raise ValueError(
            f"pred and target must both be (B, 1, H, W), got {tuple(pred.shape)} and {tuple(target.shape)}."
        )
    if mode == "suggest" and pred.dtype == torch.bool:
        raise ValueError("click mode 'suggest' needs the prediction's logits, not a bool mask.")
    prob = torch.sigmoid(pred.float()) if pred.dtype != torch.bool else pred.float()
    pred, target = (pred > 0) if pred.dtype != torch.bool else pred, target.bool()
    if mode == "uniform":
        from sam2.modeling.sam2_utils import sample_random_points_from_errors

        return sample_random_points_from_errors(target, pred)
    from sam2tune.prompts.suggest import suggest_click

    points = torch.zeros(pred.shape[0], 1, 2, dtype=torch.float32)
    labels = torch.full((pred.shape[0], 1), -1, dtype=torch.int32)
    preds, truths = pred[:, 0].cpu().numpy(), target[:, 0].cpu().numpy()
    for b, (p, t) in enumerate(zip(preds, truths, strict=True)):
        if mode == "center":
            click = error_click(p, t)
            if click is not None:
                points[b, 0] = torch.from_numpy(click[0])
                labels[b, 0] = int(click[1])
            continue
        if mode == "suggest":
            s = suggest_click(prob[b, 0].detach().cpu().numpy())
            xy = None if s is None else s.point
        else:  # "boundary": a random border pixel of the prediction (any pixel when the prediction is empty)
            cand = np.argwhere(_boundary(p)) if p.any() else np.argwhere(np.ones_like(p))
            row, col = cand[int(torch.randint(len(cand), ()).item())]
            xy = [int(col), int(row)]
        if xy is not None:
            points[b, 0] = torch.tensor(xy, dtype=torch.float32)
            labels[b, 0] = int(t[xy[1], xy[0]])  # the simulated user answers with the truth at that pixel
    return points.to(target.device), labels.to(target.device)


__all__ = ["CLICK_MODES", "error_click", "error_slice", "sample_error_clicks"]
