"""Rasterise box prompts into an image channel, so prompt-free networks (U-Net, YOLO) see the same box SAM2 gets."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def boxes_to_channel(boxes: torch.Tensor | None, batch: int, height: int, width: int, device=None) -> torch.Tensor:
    """(B, 4) xyxy pixel boxes (a NaN row = no box) -> (B, 1, H, W) float mask, 1 inside the box, 0 elsewhere."""
    out = torch.zeros(batch, 1, height, width, device=device)
    if boxes is None:
        return out
    boxes = torch.as_tensor(boxes, dtype=torch.float32, device=device).reshape(-1, 4)
    if boxes.shape[0] != batch:
        raise ValueError(f"boxes has {boxes.shape[0]} rows but the image batch has {batch} samples.")
    ys = torch.arange(height, device=device, dtype=torch.float32).view(1, height, 1) + 0.5
    xs = torch.arange(width, device=device, dtype=torch.float32).view(1, 1, width) + 0.5
    valid = ~torch.isnan(boxes).any(dim=1)
    b = torch.nan_to_num(boxes, nan=-1.0)
    x0, y0, x1, y1 = (b[:, i].view(-1, 1, 1) for i in range(4))
    inside = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1) & valid.view(-1, 1, 1)
    out[:, 0] = inside.float()
    return out


def network_input(
    image: torch.Tensor, boxes: torch.Tensor | None, prompt_channel: bool, image_size: int, name: str
) -> torch.Tensor:
    """(B, C, H, W) image [+ (B, 4) boxes as an extra channel] resized to (image_size, image_size)
    -> (B, C[+1], S, S)."""
    if image.ndim != 4:
        raise ValueError(f"{name} expects (B, C, H, W) images, got shape {tuple(image.shape)}.")
    b, _, h, w = image.shape
    x = image
    if prompt_channel:
        x = torch.cat([x, boxes_to_channel(boxes, b, h, w, device=image.device).to(image.dtype)], dim=1)
    if (h, w) != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return x
