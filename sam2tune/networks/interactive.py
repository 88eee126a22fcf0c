"""Iterative correction rounds on one image encoding: SAM2's interactive loop as a differentiable forward.

After the first prompt, each round adds one corrective click taken from the error of the previous round's mask
(``sam2tune.prompts.sample_error_clicks``), keeps every earlier click, feeds the previous round's low-resolution
mask logits back as SAM's mask prompt, and runs the prompt encoder + mask decoder again. The image encoder runs once.

Gradient flow follows SAM2's own trainer (``SAM2Train._iter_correct_pt_sampling`` in facebookresearch/sam2): the fed
back low-res logits are *not* detached, so the loss on a later round reaches the earlier rounds' decoder passes
through the mask prompt; the click positions themselves are sampled from thresholded masks (no gradient).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sam2tune.prompts.corrections import sample_error_clicks


def decode_rounds(
    segmenter,
    features: dict,
    target: torch.Tensor,
    rounds: int,
    size: tuple[int, int],
    boxes: torch.Tensor | None = None,
    point_coords: torch.Tensor | None = None,
    point_labels: torch.Tensor | None = None,
    mask_prompt: torch.Tensor | None = None,
    click_mode: str = "uniform",
    clicks: list | None = None,
) -> torch.Tensor:
    """First prompt + ``rounds`` corrective clicks on precomputed features -> logits of every round.

    Args:
        segmenter: a ``sam2tune.networks.SAM2Segmenter`` (not a DDP wrapper: this runs inside its forward).
        features: ``segmenter.encode(image)`` for the batch.
        target: true masks (B, 1, H, W) at input resolution (> 0.5 = object), where the clicks are taken from.
        rounds: corrective clicks after the first prompt (>= 0).
        size: input resolution (H, W); prompts are in its pixel coordinates.
        boxes: first prompt: (B, 4) xyxy boxes in input pixels (NaN row = no box), or None.
        point_coords: first prompt: (B, P, 2) xy clicks in input pixels, or None.
        point_labels: (B, P) labels of `point_coords` (1 positive, 0 negative, -1 padding).
        mask_prompt: first prompt: (B, 1, H, W) mask, or None.
        click_mode: "uniform" (training: a random error pixel), "center" (evaluation: the error-centre rule), or a
            simulated user of the app's suggestion ("suggest", "boundary"); see ``sample_error_clicks``.
        clicks: if a list, each round's (points (B, 1, 2), labels (B, 1)) is appended to it.

    Returns:
        Logits (B, rounds + 1, H, W): channel 0 answers the first prompt, channel r the prompt after r clicks.

    Raises:
        ValueError: when `rounds` < 0, or (rounds > 0) `click_mode` is not one of ``sam2tune.prompts.CLICK_MODES``.
    """
    if rounds < 0:
        raise ValueError(f"correction rounds must be >= 0, got {rounds}.")
    h, w = size
    scale = (segmenter.image_size / w, segmenter.image_size / h)
    truth = target.reshape(target.shape[0], 1, h, w) > 0.5
    outputs = []
    low_res, _ = segmenter.decode(features, boxes, point_coords, point_labels, mask_prompt, scale)
    for r in range(rounds + 1):
        logits = F.interpolate(low_res, size=(h, w), mode="bilinear", align_corners=False)
        outputs.append(logits[:, :1])
        if r == rounds:
            break
        with torch.no_grad():
            new_pts, new_labels = sample_error_clicks(logits[:, :1].detach(), truth, click_mode)
        new_pts, new_labels = new_pts.to(logits.device), new_labels.to(logits.device)
        if clicks is not None:
            clicks.append((new_pts, new_labels))
        if point_coords is None:
            point_coords, point_labels = new_pts, new_labels
        else:
            point_coords = torch.cat([point_coords.to(new_pts.dtype), new_pts], 1)
            point_labels = torch.cat([point_labels.to(new_labels.dtype), new_labels], 1)
        # the previous round's low-res logits become the mask prompt (SAM2: mask_inputs = low_res_masks)
        low_res, _ = segmenter.decode(features, boxes, point_coords, point_labels, low_res[:, :1], scale)
    return torch.cat(outputs, 1)


__all__ = ["decode_rounds"]
