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


def encodes_once(model: nn.Module) -> bool:
    """True when MC-dropout passes of ``model`` may share one image encoding.

    That holds for a network with ``encode(image)`` whose forward takes ``features=`` (``SAM2Segmenter``, the lung
    bundle's slice-stack wrapper) and whose image encoder holds no stochastic module: its dropout sits after the
    encoder (on the image embedding and in the mask decoder), so every pass would compute the same encoding.

    Args:
        model: the network.

    Returns:
        Whether ``mc_dropout_predict`` encodes once.
    """
    encoder = getattr(model, "image_encoder_module", None)
    if not callable(getattr(model, "encode", None)) or encoder is None:
        return False
    return not any(getattr(m, "p", 0) > 0 or getattr(m, "dropout_p", 0) > 0 for m in _stochastic_modules(encoder))


@torch.no_grad()
def mc_dropout_predict(model: nn.Module, num_samples: int, *args, reuse_encoding: bool = True,
                       **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `num_samples` stochastic passes under ``mc_dropout`` without gradients.

    The image encoder runs once and its features feed every pass when ``encodes_once(model)`` (dropout after the
    encoder): the same outputs as re-encoding each pass, for the same random state, at the cost of one encoding.

    Args:
        model: a network returning logits (B, K, H, W).
        num_samples: number of passes (>= 1).
        *args: positional inputs of ``model`` (e.g. the image).
        reuse_encoding: False re-runs the whole network every pass (the reference the benchmark compares with).
        **kwargs: keyword inputs of ``model`` (e.g. ``boxes``).

    Returns:
        (mean sigmoid probability, per-pixel population variance), each (B, K, H, W).

    Raises:
        ValueError: when `num_samples` < 1.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
    with mc_dropout(model):
        if reuse_encoding and args and "features" not in kwargs and encodes_once(model):
            kwargs = {**kwargs, "features": model.encode(args[0])}
        probs = torch.stack([torch.sigmoid(model(*args, **kwargs)) for _ in range(num_samples)])
    return probs.mean(0), probs.var(0, unbiased=False)
