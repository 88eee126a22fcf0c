"""Adapter files (small, strategy-only weights + their config) and the deployable merged model state_dict."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors
from torch import nn

from sam2tune import __version__
from sam2tune.finetune.config import FinetuneConfig
from sam2tune.finetune.freeze import trainable_tensors
from sam2tune.finetune.lora import (
    DEFAULT_ADAPTER,
    has_lora,
    load_lora_state_dict,
    lora_state_dict,
    merged_lora_state_dict,
)
from sam2tune.finetune.strategies import apply_finetune
from sam2tune.networks.segmenter import SAM2Segmenter
from sam2tune.utils.atomic import atomic_torch_save, atomic_write, atomic_write_json

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"
FORMAT_VERSION = 1


# ---- adapter state ---------------------------------------------------------------------------------------------------
def adapter_state_dict(network: nn.Module, adapter_name: str = DEFAULT_ADAPTER) -> dict[str, torch.Tensor]:
    """Collect the weights the network's strategy trains: what an adapter file holds.

    Args:
        network: a SAM2Segmenter prepared by ``apply_finetune``.
        adapter_name: the peft adapter whose LoRA weights to take.

    Returns:
        name -> tensor; LoRA keys in peft's portable form (no adapter name: ``...qkv.lora_A.weight``).

    Raises:
        ValueError: when the network has no ``finetune_config``.
    """
    config = _config_of(network)
    tensors = trainable_tensors(network, config)
    if config.strategy == "lora" and has_lora(network):
        lora = lora_state_dict(network, adapter_name)
        # peft's dict covers the LoRA tensors (and LoRA biases); the rest are the other trainable parameters.
        tensors = {k: v for k, v in tensors.items() if ".lora_" not in k} | lora
    return tensors


def load_adapter_state_dict(
    network: nn.Module, state_dict: dict[str, torch.Tensor], adapter_name: str = DEFAULT_ADAPTER, source: str = ""
) -> None:
    """Load adapter weights into a network already prepared for their strategy, strictly.

    Args:
        network: a SAM2Segmenter prepared by ``apply_finetune`` for the adapter's strategy.
        state_dict: ``adapter_state_dict`` keys -> tensors.
        adapter_name: the peft adapter slot LoRA weights go into.
        source: file or folder name for messages.

    Raises:
        ValueError: when the network has no ``finetune_config``, or any key is missing, unexpected or of another
            shape.
    """
    config = _config_of(network)
    own = adapter_state_dict(network, adapter_name)
    missing, extra = sorted(own.keys() - state_dict.keys()), sorted(state_dict.keys() - own.keys())
    shapes = sorted(k for k in own.keys() & state_dict.keys() if own[k].shape != state_dict[k].shape)
    if missing or extra or shapes:
        raise ValueError(
            f"Adapter {source or 'state_dict'} does not fit this network (finetune '{config.strategy}'): "
            f"missing {missing[:3]}, unexpected {extra[:3]}, shape mismatch {shapes[:3]} "
            f"({len(missing)}, {len(extra)}, {len(shapes)} in all)."
        )
    if config.strategy == "lora":
        unexpected = load_lora_state_dict(network, state_dict, adapter_name)
    else:
        # an adapter holds only its own keys (checked exactly above), so the rest of the network is left as it is
        unexpected = list(network.load_state_dict(state_dict, strict=False).unexpected_keys)
    if unexpected:
        raise ValueError(f"Adapter {source or 'state_dict'} holds keys this network lacks: {unexpected[:5]}.")


# ---- files -----------------------------------------------------------------------------------------------------------
def save_adapter(network: SAM2Segmenter, directory: str) -> str:
    """Write the strategy-trained weights and their config to `directory`, each file atomically.

    ``adapter_model.safetensors`` holds the weights (``adapter_state_dict``, on the CPU), ``adapter_config.json`` the
    variant, image size, in_channels and the FinetuneConfig; the weights are written first, so a config always has
    its weights.

    Args:
        network: a SAM2Segmenter prepared by ``apply_finetune``.
        directory: the folder to write (created if needed).

    Returns:
        `directory`.

    Raises:
        ValueError: when the network has no ``finetune_config``.
    """
    config = _config_of(network)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in adapter_state_dict(network).items()}
    meta = {
        "format_version": FORMAT_VERSION,
        "sam2tune_version": __version__,
        "variant": network.variant,
        "image_size": network.image_size,
        "in_channels": network.channel_adapter.in_channels,
        "finetune": config.to_dict(),
        "num_parameters": sum(v.numel() for v in tensors.values()),
    }
    os.makedirs(directory, exist_ok=True)
    # Weights first, config last: a directory with a config always has the weights that config describes.
    data = save_safetensors(tensors, metadata={"format": "pt"})
    atomic_write(os.path.join(directory, WEIGHTS_NAME), lambda f: f.write(data))
    atomic_write_json(meta, os.path.join(directory, CONFIG_NAME))
    logger.info(
        "Saved %s adapter (%d tensors, %d parameters) to %s",
        config.strategy,
        len(tensors),
        meta["num_parameters"],
        directory,
    )
    return directory


def read_adapter(directory: str, device: str | torch.device = "cpu") -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a ``save_adapter`` directory (safetensors: nothing executes on load).

    Args:
        directory: the adapter folder.
        device: where to load the weights.

    Returns:
        (adapter_config.json as a dict, name -> tensor).

    Raises:
        FileNotFoundError: when the folder or one of its two files is missing.
        ValueError: when the config lacks "variant", "finetune" or "in_channels".
    """
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"Adapter directory not found: {directory} "
            "(written by save_adapter / training with finetune lora|adapter|prompt)."
        )
    paths = {name: os.path.join(directory, name) for name in (CONFIG_NAME, WEIGHTS_NAME)}
    absent = [name for name, path in paths.items() if not os.path.isfile(path)]
    if absent:
        raise FileNotFoundError(
            f"Adapter directory {directory} lacks {', '.join(absent)} "
            f"(it should hold {CONFIG_NAME} and {WEIGHTS_NAME})."
        )
    with open(paths[CONFIG_NAME]) as f:
        meta = json.load(f)
    for key in ("variant", "finetune", "in_channels"):
        if key not in meta:
            raise ValueError(f"{paths[CONFIG_NAME]} lacks the key {key!r}: not a sam2tune adapter config.")
    # safetensors holds raw tensors only: nothing executes on load (the safe analogue of weights_only=True).
    return meta, load_file(paths[WEIGHTS_NAME], device=str(device))


def check_adapter_fits(network: SAM2Segmenter, meta: dict[str, Any], directory: str) -> FinetuneConfig:
    """Check that an adapter was trained for `network`'s variant and input channels.

    Another image size only logs a warning.

    Args:
        network: the SAM2Segmenter the adapter is for.
        meta: the adapter's config (``read_adapter``).
        directory: the adapter folder, for messages.

    Returns:
        The adapter's FinetuneConfig.

    Raises:
        ValueError: when the variant or in_channels differ, or the stored finetune config is invalid.
    """
    if meta["variant"] != network.variant:
        raise ValueError(
            f"Adapter {directory} was trained on SAM2 '{meta['variant']}' but the network is '{network.variant}': "
            f"build the base with sam2_variant={meta['variant']}."
        )
    in_channels = network.channel_adapter.in_channels
    if meta["in_channels"] != in_channels:
        raise ValueError(
            f"Adapter {directory} expects in_channels={meta['in_channels']} but the network has {in_channels}."
        )
    if meta.get("image_size") not in (None, network.image_size):
        logger.warning(
            "Adapter %s was trained at image_size=%s; the network runs at %s.",
            directory,
            meta["image_size"],
            network.image_size,
        )
    return FinetuneConfig.from_dict(meta["finetune"])


def load_adapter(network: SAM2Segmenter, directory: str) -> SAM2Segmenter:
    """Load a ``save_adapter`` directory onto `network`, applying the adapter's strategy first if it is plain.

    Args:
        network: a SAM2Segmenter of the adapter's variant and in_channels: plain, or prepared for the same config.
        directory: the adapter folder.

    Returns:
        `network`, with the adapter loaded.

    Raises:
        FileNotFoundError: when the folder or one of its files is missing.
        ValueError: when the adapter does not fit the network (variant, in_channels, keys, shapes) or the network
            is prepared for another finetune config.
    """
    meta, tensors = read_adapter(directory, device=_device_of(network))
    config = check_adapter_fits(network, meta, directory)
    current = getattr(network, "finetune_config", None)
    if current is None:
        apply_finetune(network, config)
    elif current != config:
        raise ValueError(
            f"Adapter {directory} is finetune '{config.strategy}' ({config}) but the network is prepared for {current}."
        )
    load_adapter_state_dict(network, tensors, source=directory)
    logger.info("Loaded %s adapter from %s", config.strategy, directory)
    return network


# ---- deployable model ------------------------------------------------------------------------------------------------
def merged_state_dict(network: nn.Module) -> dict[str, torch.Tensor]:
    """Build a plain SAM2Segmenter state_dict: LoRA merged by peft into the base weights; live network untouched.

    Bottleneck adapters and prompt tokens stay as they are: SAM2Segmenter.load_state_dict rebuilds them.
    Tensors that needed no merge share storage with the live network (read them, do not modify them in place).

    Args:
        network: a SAM2Segmenter, LoRA-wrapped or not.

    Returns:
        The state_dict with plain key names (no ``base_layer`` / ``lora_*``): what model.pt holds.
    """
    return merged_lora_state_dict(network) if has_lora(network) else dict(network.state_dict())


def save_merged(network: nn.Module, path: str) -> str:
    """Save ``merged_state_dict(network)`` with torch.save to `path`, atomically.

    Args:
        network: a SAM2Segmenter, LoRA-wrapped or not.
        path: the file to write (the model.pt inference and MONAI Label load).

    Returns:
        `path`.
    """
    return atomic_torch_save(merged_state_dict(network), path)


# ---- helpers ---------------------------------------------------------------------------------------------------------
def _config_of(network: nn.Module) -> FinetuneConfig:
    config = getattr(network, "finetune_config", None)
    if config is None:
        raise ValueError(
            "The network has no finetune_config: call sam2tune.finetune.apply_finetune(network, config) first."
        )
    return config


def _device_of(network: nn.Module) -> torch.device:
    return next(network.parameters()).device
