"""Monte-Carlo dropout: keep dropout stochastic at inference while everything else stays in eval mode."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from sam2.modeling.sam.transformer import Attention
from torch import nn


def _stochastic_modules(model: nn.Module) -> list[nn.Module]:
    # peft's LoRA dropout regularises training only; it is not part of the Monte-Carlo posterior.
    return [
        m
        for name, m in model.named_modules()
        if (isinstance(m, nn.Dropout | nn.Dropout2d) and "lora_dropout" not in name)
        or (isinstance(m, Attention) and m.dropout_p > 0)
    ]


@contextmanager
def mc_dropout(model: nn.Module) -> Iterator[nn.Module]:
    """Context manager: `model` in eval mode except its dropout, so repeated passes sample the MC posterior.

    Dropout layers and SAM2 attention with ``dropout_p > 0`` stay stochastic (peft's ``lora_dropout`` does not: it
    regularises training only). The model's previous train / eval mode is restored on exit.

    Args:
        model: the network, e.g. a SAM2Segmenter built with ``dropout`` > 0.

    Yields:
        `model` itself.
    """
    was_training = model.training
    model.eval()
    mods = _stochastic_modules(model)
    for m in mods:
        m.train()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def mc_dropout_predict(model: nn.Module, num_samples: int, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `num_samples` stochastic passes under ``mc_dropout`` without gradients.

    Args:
        model: a network returning logits (B, K, H, W).
        num_samples: number of passes (>= 1).
        *args: positional inputs of ``model`` (e.g. the image).
        **kwargs: keyword inputs of ``model`` (e.g. ``boxes``).

    Returns:
        (mean sigmoid probability, per-pixel population variance), each (B, K, H, W).

    Raises:
        ValueError: when `num_samples` < 1.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
    with mc_dropout(model):
        probs = torch.stack([torch.sigmoid(model(*args, **kwargs)) for _ in range(num_samples)])
    return probs.mean(0), probs.var(0, unbiased=False)
