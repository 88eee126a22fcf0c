"""Measure an AdapterBank: bytes per adapter vs the shared base, and time to switch vs to reload a full model."""

from __future__ import annotations

import time

import torch
from torch import nn

from sam2tune.finetune.bank import AdapterBank


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def measure_adapter_bank(
    bank: AdapterBank,
    image: torch.Tensor,
    prompts: dict[str, torch.Tensor] | None = None,
    repeats: int = 20,
    full_model: nn.Module | None = None,
    full_state: dict[str, torch.Tensor] | None = None,
) -> dict:
    """Time and size a loaded AdapterBank.

    The bank's active adapter is restored afterwards.

    Args:
        bank: a bank with at least one adapter.
        image: (B, C, H, W) in [0, 1].
        prompts: ``SAM2Segmenter.forward`` keywords (e.g. ``boxes`` (B, 4)).
        repeats: switches and forward passes timed.
        full_model: with `full_state` (e.g. a plain SAM2Segmenter and a best_merged state_dict), also time the
            alternative a bank avoids: one full model per domain swapped in with load_state_dict.
        full_state: the state_dict loaded into `full_model`.

    Returns:
        A JSON-able dict: variant, image_size, device, adapters, base_bytes (shared weights), adapter_bytes
        {name: bytes}, bank_bytes, one_full_model_per_domain_bytes, switch_ms (mean over `repeats` switches),
        forward_ms (mean, active adapter), reload_ms (None without `full_model` and `full_state`).

    Raises:
        ValueError: when the bank holds no adapter.
    """
    names = bank.names
    if not names:
        raise ValueError("measure_adapter_bank needs a bank with at least one adapter (bank.add(name, directory)).")
    prompts = prompts or {}
    # The shared base: every tensor but the LoRA matrices (peft keeps the base weight under .base_layer).
    base_bytes = _bytes(v for k, v in bank.base.state_dict().items() if "lora_" not in k)
    sync = torch.cuda.synchronize if image.is_cuda else (lambda: None)
    active = bank.active
    bank.use(names[0])(image, **prompts)  # warm-up: the first call allocates
    sync()
    t0 = time.perf_counter()
    for i in range(repeats):
        bank.use(names[i % len(names)])
    sync()
    switch_ms = (time.perf_counter() - t0) * 1000 / repeats
    t0 = time.perf_counter()
    for _ in range(repeats):
        bank(image, **prompts)
    sync()
    forward_ms = (time.perf_counter() - t0) * 1000 / repeats
    reload_ms = None
    if full_model is not None and full_state is not None:
        t0 = time.perf_counter()
        for _ in range(3):
            full_model.load_state_dict(full_state)  # strict: a fine-tuned full state fits exactly
        sync()
        reload_ms = (time.perf_counter() - t0) * 1000 / 3
    if active is not None:
        bank.use(active)
    adapter_bytes = bank.memory_bytes()
    return {
        "variant": bank.base.variant,
        "image_size": bank.base.image_size,
        "device": str(image.device),
        "adapters": names,
        "base_bytes": base_bytes,
        "adapter_bytes": adapter_bytes,
        "bank_bytes": base_bytes + sum(adapter_bytes.values()),
        "one_full_model_per_domain_bytes": base_bytes * len(names),
        "switch_ms": switch_ms,
        "forward_ms": forward_ms,
        "reload_ms": reload_ms,
    }
