"""Timing of 3D propagation (``sam2tune.networks.propagator.propagate_volume``) for the speed benchmark."""

from __future__ import annotations

import time

import numpy as np
import torch

from sam2tune.networks.propagator import ObjectPrompt, propagate_volume


def time_propagation(
    segmenter,
    depth: int = 100,
    size: int = 512,
    num_objects: int = 13,
    device: str = "cuda",
    amp: bool = True,
    repeats: int = 3,
) -> dict:
    """Time ``propagate_volume`` on a random volume (encoder included), for the speed benchmark.

    The volume is (depth, 1, size, size) with `num_objects` boxes on the middle slice, propagated both directions
    under inference mode (bf16 autocast on CUDA when `amp`); one warm-up run is not timed.

    Args:
        segmenter: a 1-channel ``SAM2Segmenter`` (moved to `device` and set to eval mode).
        depth: slices of the volume.
        size: slice height and width.
        num_objects: box-prompted objects.
        device: where to run.
        amp: bf16 autocast (CUDA only).
        repeats: timed runs.

    Returns:
        {"seconds": median, "all": per-run seconds, "depth", "size", "num_objects", "image_size", "variant",
        "device", "amp"}.
    """
    segmenter = segmenter.to(device).eval()
    volume = torch.rand(depth, 1, size, size, device=device)
    prompts = [
        [ObjectPrompt(depth // 2, box=[size * 0.3 + i, size * 0.3, size * 0.6 + i, size * 0.6])]
        for i in range(num_objects)
    ]
    times = []
    use_amp = amp and str(device).startswith("cuda")
    for _ in range(repeats + 1):  # the first run warms up kernels and allocators
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            propagate_volume(segmenter, volume, prompts)
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times = times[1:]
    return {
        "seconds": float(np.median(times)),
        "all": times,
        "depth": depth,
        "size": size,
        "num_objects": num_objects,
        "image_size": segmenter.image_size,
        "variant": getattr(segmenter, "variant", "?"),
        "device": str(device),
        "amp": use_amp,
    }


__all__ = ["time_propagation"]
