"""Does a fine-tuned state_dict fit a SAM2Segmenter? Strict loading with an error that names keys and the likely cause.

Official SAM2 checkpoints ({"model": state_dict}) load tolerantly, with mismatches reported (networks/build.py);
a sam2tune model.pt loads strictly through ``load_finetuned_state_dict``, so a partly random network never runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn

from sam2tune.networks.build import checkpoint_variant

if TYPE_CHECKING:
    from sam2tune.networks.segmenter import SAM2Segmenter

logger = logging.getLogger(__name__)


class CheckpointMismatchError(ValueError):
    """A fine-tuned (sam2tune) state_dict does not fit the network it is loaded into."""


_LORA_MARKERS = (".lora_A.", ".lora_B.", ".lora_embedding_", ".lora_magnitude_vector", ".base_layer.")
_SAM2_1_ONLY = ("sam.no_obj_embed_spatial", "sam.obj_ptr_tpos_proj.")
_SHOW = 5


def is_sam2tune_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True when a state_dict was saved from a SAM2Segmenter (its SAM2 keys start with "sam.").

    Args:
        state_dict: a state_dict read by `read_state_dict`.

    Returns:
        True for a sam2tune model.pt, False for an official SAM2 checkpoint (keys "image_encoder.*", ...).
    """
    return any(k.startswith("sam.") for k in state_dict)


def _has_lora(keys) -> bool:
    return any(m in k for k in keys for m in _LORA_MARKERS)


def _in_channels_of(keys: set[str], state_dict: Mapping[str, torch.Tensor]) -> str:
    if "channel_adapter.proj.weight" in keys:
        return str(int(state_dict["channel_adapter.proj.weight"].shape[1]))
    return "1 or 3"


def _likely_causes(network: SAM2Segmenter, state_dict: Mapping[str, torch.Tensor], missing: list[str],
                   unexpected: list[str], shapes: list[str]) -> list[str]:
    own = network.state_dict()
    theirs = set(state_dict)
    causes = []
    file_lora, net_lora = _has_lora(theirs), _has_lora(own)
    if file_lora and not net_lora:
        causes.append(
            "the file holds unmerged peft LoRA keys (lora_A / base_layer): it is a training checkpoint of finetune "
            "'lora', not the exported model.pt. Use <ckpt_dir>/model.pt (LoRA merged by ModelExport) or "
            "<ckpt_dir>/adapter/ with sam2tune.finetune.load_adapter"
        )
    if net_lora and not file_lora:
        causes.append(
            "the network is wrapped for finetune 'lora' but the file is a plain (merged) state_dict: load it as "
            "network_def pretrained_checkpoint, before apply_finetune, or load <ckpt_dir>/adapter/ with load_adapter"
        )
    if len(missing) > len(own) / 2 and not any(k.startswith("sam.image_encoder.trunk.patch_embed") for k in theirs):
        causes.append(
            f"the file holds only {len(theirs)} tensors and no image encoder: an adapter-only file "
            "(adapter_state_dict / adapter/adapter_model.safetensors). Load it with "
            "sam2tune.finetune.load_adapter(network, <ckpt_dir>/adapter), or use the merged <ckpt_dir>/model.pt"
        )
    found = checkpoint_variant({k[4:]: v for k, v in state_dict.items() if k.startswith("sam.")})
    if found is not None and found != network.variant:
        causes.append(f"the file is SAM2 '{found}' but the network is '{network.variant}': set sam2_variant {found}")
    in_net, in_file = "channel_adapter.proj.weight" in own, "channel_adapter.proj.weight" in theirs
    if in_net != in_file or "channel_adapter.proj.weight" in shapes:
        causes.append(
            f"the file was trained with in_channels={_in_channels_of(theirs, state_dict)} but the network has "
            f"in_channels={network.channel_adapter.in_channels}: a model.pt of another bundle?"
        )
    if "prompt_tokens" in missing:
        causes.append(
            f"the network has {network.prompt_tokens.shape[0]} learned prompt token(s) (network_def num_prompt_tokens) "
            "but the file has none: a model.pt of another bundle, or trained without prompt tokens"
        )
    if "prompt_tokens" in shapes:
        causes.append(
            f"the file has {state_dict['prompt_tokens'].shape[0]} prompt token(s), the network "
            f"{network.prompt_tokens.shape[0]}: set network_def num_prompt_tokens to match the file"
        )
    if any(".adapter." in k for k in missing):
        causes.append("the network has bottleneck adapters (finetune 'adapter' / adapter_dim) but the file has none: "
                      "another finetune strategy")
    if any(k.startswith(_SAM2_1_ONLY) for k in missing + unexpected):
        causes.append("the file and the network are different SAM2 releases (2 vs 2.1): set network_def version")
    if not causes:
        causes.append("a model.pt of another bundle, variant or finetune strategy, or of another sam2tune/sam2 version")
    return causes


def check_state_dict_fits(network: SAM2Segmenter, state_dict: Mapping[str, torch.Tensor], source: str = "") -> None:
    """Raise CheckpointMismatchError unless `state_dict` has exactly the network's keys, with the same shapes.

    Call `network.grow_for(state_dict)` first when adapters / prompt tokens may have to be added.

    Args:
        network: the SAM2Segmenter to load into.
        state_dict: a sam2tune state_dict.
        source: file name for the message.

    Raises:
        CheckpointMismatchError: naming the first missing / unexpected / mis-shaped keys, their counts and the
            likely cause (another variant, bundle or finetune strategy, an adapter-only file).
    """
    own = network.state_dict()
    missing = sorted(own.keys() - state_dict.keys())
    unexpected = sorted(state_dict.keys() - own.keys())
    shapes = sorted(k for k in own.keys() & state_dict.keys() if tuple(own[k].shape) != tuple(state_dict[k].shape))
    if not (missing or unexpected or shapes):
        return

    def few(keys: list[str]) -> str:
        return f"{len(keys)} {keys[:_SHOW]}{' ...' if len(keys) > _SHOW else ''}"

    shape_text = [f"{k}: file {tuple(state_dict[k].shape)} vs network {tuple(own[k].shape)}" for k in shapes[:_SHOW]]
    causes = _likely_causes(network, state_dict, missing, unexpected, shapes)
    raise CheckpointMismatchError(
        f"Fine-tuned checkpoint {source or '(state_dict)'} does not fit this network (sam2_variant "
        f"'{network.variant}', in_channels {network.channel_adapter.in_channels}): missing keys {few(missing)}; "
        f"unexpected keys {few(unexpected)}; shape mismatches {len(shapes)} {shape_text}. "
        f"Likely cause: {'; '.join(causes)}. Fine-tuned model.pt files load strictly, so a partly random network "
        f"never runs; an official SAM2 checkpoint ({{'model': state_dict}}) loads with mismatches reported."
    )


def load_finetuned_state_dict(network: SAM2Segmenter, state_dict: Mapping[str, torch.Tensor], source: str = "") -> None:
    """Load a sam2tune model.pt state_dict strictly (adapters / prompt tokens it carries are added first).

    Args:
        network: the SAM2Segmenter to load into (not wrapped by peft: model.pt holds merged LoRA weights).
        state_dict: the state_dict, e.g. `read_state_dict(path)` (torch.load with weights_only=True).
        source: file name for messages.

    Raises:
        CheckpointMismatchError: any key or shape mismatch, naming the keys and the likely cause.
    """
    network.grow_for(state_dict)
    check_state_dict_fits(network, state_dict, source)
    nn.Module.load_state_dict(network, state_dict, strict=True)
    logger.info(
        "Loaded sam2tune checkpoint %s (%d tensors, all keys matched)", source or "(state_dict)", len(state_dict)
    )
