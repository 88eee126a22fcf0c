"""Parameter counts per component, a printable table, and optimizer parameter groups."""

from __future__ import annotations

from typing import Any

from torch import nn

from sam2tune.finetune.config import COMPONENTS
from sam2tune.finetune.freeze import component_of

ENCODER_GROUP = "image_encoder"
MAIN_GROUP = "decoder"


def count_parameters(network: nn.Module) -> dict[str, tuple[int, int]]:
    """Count trainable and total parameter elements per component.

    Args:
        network: a SAM2Segmenter (trainable = ``requires_grad``).

    Returns:
        component -> (trainable, total) element counts, in a fixed order: image_encoder, prompt_encoder,
        mask_decoder, memory, prompt_tokens, channel_adapter, lora, adapter ("other" only if some parameter fits
        none of them), ending with "total".
    """
    counts = {c: [0, 0] for c in COMPONENTS}
    for name, param in network.named_parameters():
        entry = counts.setdefault(component_of(name), [0, 0])
        entry[1] += param.numel()
        if param.requires_grad:
            entry[0] += param.numel()
    counts["total"] = [sum(v[0] for v in counts.values()), sum(v[1] for v in counts.values())]
    return {k: (v[0], v[1]) for k, v in counts.items()}


def format_parameter_table(counts: dict[str, tuple[int, int]] | nn.Module) -> str:
    """Format trainable / total parameters per component as a fixed-width table.

    Args:
        counts: ``count_parameters`` output, or a network to count.

    Returns:
        The table, one line per component after a header, with the trainable share in percent.
    """
    if isinstance(counts, nn.Module):
        counts = count_parameters(counts)
    lines = [f"{'component':<16}{'trainable':>14}{'total':>14}{'trainable %':>13}"]
    for name, (trainable, total) in counts.items():
        pct = f"{100.0 * trainable / total:.2f}" if total else "-"
        lines.append(f"{name:<16}{trainable:>14,}{total:>14,}{pct:>13}")
    return "\n".join(lines)


def param_groups(
    network: nn.Module, lr: float, encoder_lr_mult: float | None = None, weight_decay: float = 0.0
) -> list[dict[str, Any]]:
    """Split the trainable parameters into optimizer groups: the pretrained image encoder, and the rest.

    Only the pretrained image-encoder weights get the multiplier; new parameters (LoRA, adapters, prompt tokens,
    channel adapter) and the other components use `lr`, so a small multiplier slows the big pretrained encoder
    without starving the parameters that start from scratch.

    Args:
        network: a SAM2Segmenter with its trainable parameters set (``apply_finetune``).
        lr: learning rate of the main group.
        encoder_lr_mult: multiplier of the image-encoder group; None = ``network.finetune_config.encoder_lr_mult``
            (1.0 without a config).
        weight_decay: weight decay of both groups.

    Returns:
        ``[{"name": "image_encoder", "lr": lr * mult, ...}, {"name": "decoder", "lr": lr, ...}]`` with "params",
        "weight_decay" and "lr_mult"; empty groups are left out, and the main group comes last (the history handler
        logs its LR as "lr").

    Raises:
        ValueError: when no parameter is trainable.
    """
    if encoder_lr_mult is None:  # default: the network's FinetuneConfig, else no multiplier
        config = getattr(network, "finetune_config", None)
        encoder_lr_mult = config.encoder_lr_mult if config is not None else 1.0
    encoder, main = [], []
    for name, param in network.named_parameters():
        if param.requires_grad:
            (encoder if component_of(name) == "image_encoder" else main).append(param)
    if not encoder and not main:
        raise ValueError("The network has no trainable parameters: check the finetune strategy and train_* flags.")
    groups = [
        {
            "name": ENCODER_GROUP,
            "params": encoder,
            "lr": lr * encoder_lr_mult,
            "weight_decay": weight_decay,
            "lr_mult": encoder_lr_mult,
        },
        {"name": MAIN_GROUP, "params": main, "lr": lr, "weight_decay": weight_decay, "lr_mult": 1.0},
    ]
    return [g for g in groups if g["params"]]
