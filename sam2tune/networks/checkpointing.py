"""Activation checkpointing of Hiera blocks: recompute each block's activations in backward to save memory."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class _CheckpointedForward:
    """Mixin whose forward runs the block's own forward under torch.utils.checkpoint while gradients are on."""

    def forward(self, *args, **kwargs):  # noqa: D102 - same contract as the wrapped block's forward
        if not torch.is_grad_enabled():
            return super().forward(*args, **kwargs)
        # Non-reentrant checkpointing works when only inner parameters (LoRA) need grad and the input does not.
        return checkpoint(super().forward, *args, use_reentrant=False, **kwargs)


_CLASSES: dict[type, type] = {}


def _checkpointed_class(cls: type) -> type:
    # Swapping __class__ (rather than wrapping the block in a new module) keeps state_dict keys, peft LoRA layer
    # names and the adapters' forward hooks exactly as they were; hooks run outside the checkpointed region.
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"Checkpointed{cls.__name__}", (_CheckpointedForward, cls), {})
    return _CLASSES[cls]


def _trunk(network: nn.Module) -> nn.Module:
    sam = getattr(network, "sam", network)
    try:
        return sam.image_encoder.trunk
    except AttributeError as e:
        raise TypeError(
            f"enable_activation_checkpointing expects a SAM2Segmenter or a SAM2 model with image_encoder.trunk.blocks, "
            f"got {type(network).__name__}."
        ) from e


def enable_activation_checkpointing(network: nn.Module) -> int:
    """Checkpoint every ``image_encoder.trunk.blocks[i]`` of a SAM2 network in place (idempotent).

    Each block's class is swapped for a subclass whose forward runs under ``torch.utils.checkpoint`` while gradients
    are enabled, so state_dict keys, peft LoRA layers and adapter hooks are unchanged.

    Args:
        network: a SAM2Segmenter (its ``sam``) or a SAM2Base.

    Returns:
        The number of Hiera blocks, all checkpointed now.

    Raises:
        TypeError: when `network` has no ``image_encoder.trunk``.
    """
    count = 0
    for block in _trunk(network).blocks:
        if not isinstance(block, _CheckpointedForward):
            block.__class__ = _checkpointed_class(type(block))
        count += 1
    return count


def disable_activation_checkpointing(network: nn.Module) -> int:
    """Undo ``enable_activation_checkpointing`` in place.

    Args:
        network: a SAM2Segmenter or a SAM2Base.

    Returns:
        How many blocks were restored to their own class (0 when none was checkpointed).

    Raises:
        TypeError: when `network` has no ``image_encoder.trunk``.
    """
    count = 0
    for block in _trunk(network).blocks:
        if isinstance(block, _CheckpointedForward):
            block.__class__ = type(block).__mro__[2]
            count += 1
    return count


def is_activation_checkpointed(network: nn.Module) -> bool:
    """Tell whether every Hiera block of `network` recomputes its activations in backward.

    Args:
        network: a SAM2Segmenter or a SAM2Base.

    Returns:
        True when all blocks are checkpointed.

    Raises:
        TypeError: when `network` has no ``image_encoder.trunk``.
    """
    return all(isinstance(b, _CheckpointedForward) for b in _trunk(network).blocks)
