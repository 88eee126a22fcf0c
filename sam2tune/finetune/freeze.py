"""Freezing by parameter name: every parameter belongs to one component, and the config says which components train."""

from __future__ import annotations

import re

import torch
from torch import nn

from sam2tune.finetune.config import FinetuneConfig

# Parameter-name prefixes of the pretrained SAM2 parts (SAM2Segmenter keeps SAM2Base as `self.sam`).
_PREFIX_COMPONENT = (
    ("sam.image_encoder.", "image_encoder"),
    ("sam.sam_prompt_encoder.", "prompt_encoder"),
    ("sam.sam_mask_decoder.", "mask_decoder"),
    # Everything else under SAM2Base serves video/3D memory: memory_attention, memory_encoder, obj_ptr_proj,
    # obj_ptr_tpos_proj, mask_downsample, maskmem_tpos_enc and the no-memory / no-object embeddings.
    ("sam.", "memory"),
)
# peft names LoRA tensors `<layer>.lora_A.<adapter>.weight`, `lora_B`, `lora_embedding_A`, `lora_magnitude_vector`...
_LORA = re.compile(r"\.lora_[A-Za-z_]+\.")
_ADAPTER = ".adapter."


def component_of(name: str) -> str:
    """Name the component a SAM2Segmenter parameter belongs to.

    Args:
        name: a parameter name of a SAM2Segmenter (``named_parameters``), LoRA-wrapped or not.

    Returns:
        image_encoder, prompt_encoder, mask_decoder, memory, prompt_tokens, channel_adapter, lora, adapter, or
        "other" for a name that fits none.
    """
    if name.startswith("channel_adapter."):
        return "channel_adapter"
    if name == "prompt_tokens":
        return "prompt_tokens"
    if _LORA.search(name):
        return "lora"
    if _ADAPTER in name:
        return "adapter"
    for prefix, component in _PREFIX_COMPONENT:
        if name.startswith(prefix):
            return component
    return "other"


def is_lora_base(name: str) -> bool:
    """Tell whether a parameter is a pretrained weight peft keeps (frozen) inside a LoRA layer.

    Args:
        name: a parameter name.

    Returns:
        True for ``<layer>.base_layer.*`` names.
    """
    return ".base_layer." in name


def is_trainable(name: str, config: FinetuneConfig) -> bool:
    """Decide whether parameter `name` trains under `config` (the one rule freezing and adapter saving both use).

    Args:
        name: a SAM2Segmenter parameter name.
        config: the fine-tuning config.

    Returns:
        True when the parameter trains: its component's flag (``trainable_components``), except that peft's LoRA
        base weights stay frozen and ``lora_bias`` decides the biases under lora.
    """
    if config.strategy == "lora" and name.endswith(".bias"):
        # peft semantics: "all" trains every bias, "lora_only" the biases of the LoRA-wrapped layers.
        if config.lora_bias == "all" or (config.lora_bias == "lora_only" and is_lora_base(name)):
            return True
    if is_lora_base(name):
        # The wrapped weights stay frozen so the update is exactly the low-rank delta peft merges at export.
        return False
    component = component_of(name)
    return config.trainable_components().get(component, config.strategy == "full")


def apply_freezing(network: nn.Module, config: FinetuneConfig) -> list[str]:
    """Set ``requires_grad`` on every parameter of `network` from `config`, in place.

    Args:
        network: a SAM2Segmenter (LoRA / adapters already added for their strategies).
        config: the fine-tuning config.

    Returns:
        The names of the trainable parameters.
    """
    trainable = []
    for name, param in network.named_parameters():
        flag = is_trainable(name, config)
        param.requires_grad_(flag)
        if flag:
            trainable.append(name)
    return trainable


def trainable_tensors(network: nn.Module, config: FinetuneConfig) -> dict[str, torch.Tensor]:
    """Collect the parameters `config` trains (what an adapter file holds).

    Args:
        network: a SAM2Segmenter.
        config: the fine-tuning config.

    Returns:
        name -> detached parameter (shares storage with the network).
    """
    return {n: p.detach() for n, p in network.named_parameters() if is_trainable(n, config)}
