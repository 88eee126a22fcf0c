"""Run a 2D network on stacks of adjacent slices: (B, S, H, W) -> every slice as a 1-channel image -> (B, S, H, W)."""

from __future__ import annotations

import torch
from monai.inferers import Inferer
from torch import nn


def run_slice_stack(network: nn.Module, inputs: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """Run a 2D network on every slice of a batch of slice stacks, as single-channel images.

    Args:
        network: a 2D segmentation network taking (N, 1, H, W) images and returning logits (N, K, H', W').
        inputs: (B, S, H, W) stacks of S adjacent slices.
        *args: extra positional arguments, passed on to the network.
        **kwargs: keyword arguments of the network (e.g. prompts); a tensor whose first dim is B (one entry per
            sample) is repeated for the S slices of its sample, anything else is passed as it is.

    Returns:
        Logits (B, S, H', W'): the network's first output channel for every slice.

    Raises:
        ValueError: when ``inputs`` is not 4D.
    """
    if inputs.ndim != 4:
        raise ValueError(f"Slice stacks must be (B, S, H, W), got shape {tuple(inputs.shape)}.")
    b, s, h, w = inputs.shape
    # Prompts given per sample (first dim B) apply to every slice of that sample.
    kwargs = {k: v.repeat_interleave(s, 0) if torch.is_tensor(v) and v.shape[:1] == (b,) else v
              for k, v in kwargs.items()}
    out = network(inputs.reshape(b * s, 1, h, w), *args, **kwargs)
    return out[:, 0].reshape(b, s, *out.shape[-2:])


class SliceStackInferer(Inferer):
    """MONAI inferer for slice stacks: the engine's network sees single slices, the loss sees the stack.

    Called, it maps (B, S, H, W) stacks to (B, S, H, W) logits through ``run_slice_stack`` (``__call__``).
    """

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args, label: torch.Tensor | None = None,
                 **kwargs) -> torch.Tensor:
        """Run the network on every slice of the stacks.

        Args:
            inputs: (B, S, H, W) slice stacks.
            network: a 2D network taking (N, 1, H, W) images (e.g. ``sam2tune.networks.SAM2Segmenter``).
            *args: extra positional arguments from the engine, passed on to the network.
            label: the label from ``PromptPrepareBatch(pass_label=True)`` (meant for the interactive inferers);
                not used.
            **kwargs: the network's keyword arguments (prompts); per-sample tensors (first dim B) are repeated for
                the S slices of their sample.

        Returns:
            Logits (B, S, H, W): the network's first output channel for every slice.

        Raises:
            ValueError: when ``inputs`` is not 4D.
        """
        return run_slice_stack(network, inputs, *args, **kwargs)
