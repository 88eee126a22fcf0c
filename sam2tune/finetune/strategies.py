"""apply_finetune: make a plain SAM2Segmenter ready for a strategy (full, decoder_only, lora, adapter, prompt)."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from sam2tune.finetune.config import FinetuneConfig, as_config
from sam2tune.finetune.freeze import apply_freezing
from sam2tune.finetune.lora import inject_lora
from sam2tune.finetune.params import count_parameters, format_parameter_table
from sam2tune.networks.adapters import adapter_bottleneck_in, add_hiera_adapters
from sam2tune.networks.checkpointing import enable_activation_checkpointing
from sam2tune.networks.segmenter import SAM2Segmenter

logger = logging.getLogger(__name__)


def apply_finetune(network: SAM2Segmenter, config: FinetuneConfig | dict[str, Any] | str) -> SAM2Segmenter:
    """Prepare `network` in place for `config` (a FinetuneConfig, its dict, or a strategy name) and return it.

    lora: peft LoRA layers on the target Linear layers; adapter: bottleneck adapters after each Hiera block;
    prompt: learned prompt tokens (added when the network has none). Then every parameter is frozen or not by
    `is_trainable`, `network.finetune_config` is set, and a trainable/total table is logged. Applying the same
    config again only re-applies the freezing; applying another one raises.

    Args:
        network: a plain SAM2Segmenter (not wrapped in DistributedDataParallel).
        config: a FinetuneConfig, its dict (bundle JSON) or a strategy name.

    Returns:
        `network` itself, prepared.

    Raises:
        TypeError: when `network` is not a SAM2Segmenter.
        ValueError: for an invalid config, a network already prepared for another config, LoRA targets that match
            no layer, or existing adapters / prompt tokens of another size than the config's.
    """
    if not isinstance(network, SAM2Segmenter):
        raise TypeError(
            f"apply_finetune expects a SAM2Segmenter, got {type(network).__name__} "
            "(apply it before wrapping the network in DistributedDataParallel)."
        )
    config = as_config(config)
    current = getattr(network, "finetune_config", None)
    if current is not None and current != config:
        raise ValueError(
            f"Network already prepared for finetune '{current.strategy}' ({current}); build a fresh network "
            f"to apply finetune '{config.strategy}'."
        )
    if current is None:
        if config.strategy == "lora":
            wrapped = inject_lora(network, config)
            logger.info("LoRA (r=%d, alpha=%s) wraps %d layers.", config.lora_r, config.lora_alpha, len(wrapped))
        elif config.strategy == "adapter":
            _ensure_adapters(network, config.adapter_dim)
        elif config.strategy == "prompt":
            _ensure_prompt_tokens(network, config.num_prompt_tokens)
    if config.activation_checkpointing:
        enable_activation_checkpointing(network)
    apply_freezing(network, config)
    network.finetune_config = config
    logger.info(
        "finetune '%s': trainable parameters\n%s", config.strategy, format_parameter_table(count_parameters(network))
    )
    return network


def _ensure_adapters(network: SAM2Segmenter, dim: int) -> None:
    trunk = network.sam.image_encoder.trunk
    existing = adapter_bottleneck_in(network.state_dict())
    if existing and existing != dim:
        raise ValueError(f"The network already has Hiera adapters of width {existing}, but adapter_dim={dim}.")
    add_hiera_adapters(trunk, dim)


def _ensure_prompt_tokens(network: SAM2Segmenter, num: int) -> None:
    tokens = network.prompt_tokens
    if tokens is not None:
        if tokens.shape[0] != num:
            raise ValueError(
                f"The network already has {tokens.shape[0]} prompt tokens, but num_prompt_tokens={num}: "
                "set them equal (network_def num_prompt_tokens and the finetune config)."
            )
        return
    ref = next(network.sam.sam_prompt_encoder.parameters())
    # Small random init, as SAM2Segmenter does: the tokens start near "no prompt" and learn the task.
    network.prompt_tokens = nn.Parameter(torch.randn(num, network.embed_dim, device=ref.device, dtype=ref.dtype) * 0.02)
