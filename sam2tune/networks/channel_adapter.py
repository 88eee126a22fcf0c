"""Map 1-channel (CT/MR) or N-channel images onto SAM2's 3 input channels."""

from __future__ import annotations

import torch
from torch import nn


class ChannelAdapter(nn.Module):
    """Map (B, C, H, W) images to SAM2's (B, 3, H, W): identity for 3, replicate for 1, a 1x1 conv for N.

    The N-channel conv (no bias) starts as the channel mean, so pretrained features stay meaningful at step 0.

    Args:
        in_channels: channels of the images given to forward (>= 1).

    Raises:
        ValueError: when `in_channels` < 1.
    """

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}.")
        self.in_channels = in_channels
        self.proj: nn.Conv2d | None = None
        if in_channels not in (1, 3):
            # Starting from the channel mean keeps pretrained features meaningful at step 0.
            self.proj = nn.Conv2d(in_channels, 3, kernel_size=1, bias=False)
            nn.init.constant_(self.proj.weight, 1.0 / in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map the channels of `x` onto 3.

        Args:
            x: images (B, in_channels, H, W).

        Returns:
            (B, 3, H, W); for 1 channel an expanded view of `x` (no copy).

        Raises:
            ValueError: when `x` has another channel count.
        """
        if x.shape[1] != self.in_channels:
            raise ValueError(f"Expected {self.in_channels} input channels, got {x.shape[1]} (shape {tuple(x.shape)}).")
        if self.proj is not None:
            return self.proj(x)
        return x.expand(-1, 3, -1, -1) if self.in_channels == 1 else x
