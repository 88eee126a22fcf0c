"""ResNet-encoder U-Net baseline (MONAI FlexibleUNet, trained from scratch) with SAM2Segmenter's call signature."""

from __future__ import annotations

import logging
import os

import torch
import torch.nn.functional as F
from monai.networks.nets import FlexibleUNet
from torch import nn

from sam2tune.baselines.prompt_channel import network_input

logger = logging.getLogger(__name__)
RESNET_BACKBONES = ("resnet10", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet200")


def load_baseline_checkpoint(network: nn.Module, path: str) -> nn.Module:
    """Load a baseline model.pt (plain state_dict, torch.load weights_only=True) into `network`; clear errors."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Baseline checkpoint not found: {path}. Train first (scripts/train_baseline.py) "
                                f"or set pretrained_checkpoint to null.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    try:
        network.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"Checkpoint {path} does not fit {type(network).__name__} (was it trained with the same "
                         f"backbone / prompt_channel / in_channels?): {e}") from e
    logger.info("Loaded baseline weights from %s", path)
    return network


class ResNetUNet(nn.Module):
    """U-Net with a ResNet encoder (MONAI FlexibleUNet, `pretrained=False`), called like SAM2Segmenter.

    Args:
        image_size: square network input (multiple of 32); other input sizes are resized to it and back.
        in_channels: image channels (1 for CT/MR, 3 for RGB).
        out_channels: logit channels K of the output (B, K, H, W).
        backbone: one of RESNET_BACKBONES.
        prompt_channel: True = the box prompt is rasterised into one extra input channel (fair against SAM2 with
            a box); False = prompt-free, prompts are ignored.
        dropout: decoder dropout (the contract's `network_def` dropout argument).
        pretrained_checkpoint: a model.pt written by this class (evaluation / inference), or None = random init.
    """

    def __init__(self, image_size: int = 1024, in_channels: int = 3, out_channels: int = 1, backbone: str = "resnet18",
                 prompt_channel: bool = True, dropout: float = 0.0, pretrained_checkpoint: str | None = None,
                 **unused: object) -> None:
        super().__init__()
        if backbone not in RESNET_BACKBONES:
            raise ValueError(f"backbone must be one of {RESNET_BACKBONES}, got {backbone!r}.")
        if image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32 for a ResNet U-Net, got {image_size}.")
        if unused:  # SAM2-only settings (variant, attn_dropout, ...) may arrive from a bundle's network_def
            logger.debug("ResNetUNet ignores SAM2 settings %s", sorted(unused))
        self.image_size, self.prompt_channel = int(image_size), bool(prompt_channel)
        self.unet = FlexibleUNet(in_channels=in_channels + int(self.prompt_channel), out_channels=out_channels,
                                 backbone=backbone, pretrained=False, spatial_dims=2, dropout=dropout)
        if pretrained_checkpoint:
            load_baseline_checkpoint(self, pretrained_checkpoint)

    def forward(
        self, image: torch.Tensor, boxes: torch.Tensor | None = None, **prompts: torch.Tensor | None
    ) -> torch.Tensor:
        """(B, C, H, W) image in [0, 1] [+ (B, 4) xyxy boxes in its pixels] -> logits (B, K, H, W)."""
        h, w = image.shape[-2:]
        logits = self.unet(network_input(image, boxes, self.prompt_channel, self.image_size, "ResNetUNet"))
        if logits.shape[-2:] != (h, w):
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return logits
