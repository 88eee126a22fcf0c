"""Measure an AdapterBank: bytes per adapter vs the shared base, and time to switch vs to reload a full model."""

from __future__ import annotations

import time

import torch

from sam2tune.finetune.bank import AdapterBank
from sam2tune.networks.segmenter import SAM2Segmenter


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def measure_adapter_bank(
    base: SAM2Segmenter,
    adapters: dict[str, str],
    image: torch.Tensor,
    prompts: dict[str, torch.Tensor] | None = None,
    repeats: int = 20,
    merged_state: dict[str, torch.Tensor] | None = None,
) -> dict:
    """Load `adapters` {name: save_adapter dir} on `base` and time switching -> a JSON-able dict of measurements.

    image: (B, C, H, W) in [0, 1]; prompts: SAM2Segmenter.forward keywords (e.g. boxes (B, 4)).
    merged_state: a full state_dict (e.g. a best_merged file) to time the alternative, reloading a whole model
    per domain with load_state_dict; left out, the base's own state_dict is reloaded instead.
    Returns base_bytes, adapter_bytes {name: bytes}, bank_bytes, one_full_model_per_domain_bytes, switch_ms
    (mean of `repeats` switches), forward_ms (active adapter, mean) and reload_ms (mean of 3 full reloads).
    """
    if len(adapters) < 1:
        raise ValueError("measure_adapter_bank needs at least one adapter directory.")
    prompts = prompts or {}
    base_bytes = _bytes(list(base.parameters()) + list(base.buffers()))
    bank = AdapterBank(base)
    for name, directory in adapters.items():
        bank.add(name, directory)
    names = bank.names
    sync = torch.cuda.synchronize if image.is_cuda else (lambda: None)

    bank.use(names[0])
    bank(image, **prompts)  # warm-up: first call allocates
    sync()
    t0 = time.perf_counter()
    for i in range(repeats):
        bank.use(names[i % len(names)])
    sync()
    switch_ms = (time.perf_counter() - t0) * 1000 / repeats

    t0 = time.perf_counter()
    for i in range(repeats):
        bank(image, **prompts)
    sync()
    forward_ms = (time.perf_counter() - t0) * 1000 / repeats

    # The alternative a bank avoids: one full model per domain, swapped in by load_state_dict.
    reference = SAM2Segmenter(base.variant, base.image_size, pretrained_checkpoint=None).to(image.device)
    state = merged_state if merged_state is not None else {k: v.clone() for k, v in reference.state_dict().items()}
    t0 = time.perf_counter()
    for _ in range(3):
        reference.load_state_dict(state, strict=False)
    sync()
    reload_ms = (time.perf_counter() - t0) * 1000 / 3

    adapter_bytes = bank.memory_bytes()
    return {
        "variant": base.variant,
        "image_size": base.image_size,
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
