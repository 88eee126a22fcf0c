"""Timing and memory measurement of a repeated step: warm-up, device synchronisation, images/s, peak memory."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

import psutil
import torch

GIB = 1024**3


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (CUDA kernels run asynchronously, so timings need this)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_memory(device: torch.device) -> None:
    """Free cached blocks and reset the peak counter, so the next row's peak is its own."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _rss() -> int:
    return psutil.Process().memory_info().rss


def time_steps(
    step: Callable[[], object], device: torch.device, images_per_step: int, steps: int = 10, warmup: int = 2
) -> dict:
    """Run `step` warmup + steps times; return images/s, step times (ms) and peak memory of the timed steps.

    Peak memory is torch.cuda.max_memory_allocated on CUDA (tensors only) and the largest process RSS seen after a
    step on CPU (whole process, so it includes the interpreter and earlier rows' leftovers: compare CPU rows with care).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}.")
    for _ in range(warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_peak = _rss()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        synchronize(device)  # per-step sync costs little next to a SAM2 step and gives honest per-step times
        times.append(time.perf_counter() - start)
        rss_peak = max(rss_peak, _rss()) if device.type != "cuda" else rss_peak
    total = sum(times)
    median = statistics.median(times)
    if device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(device) / GIB, "cuda_max_memory_allocated"
    else:
        peak, kind = rss_peak / GIB, "process_rss"
    return {
        # The median step resists bursts from other processes (shared CI machines); the mean rate is kept beside it.
        "images_per_s": images_per_step / median,
        "images_per_s_mean": images_per_step * steps / total,
        "step_ms_mean": 1000 * total / steps,
        "step_ms_median": 1000 * median,
        "peak_mem_gib": peak,
        "memory_kind": kind,
        "steps": steps,
        "warmup": warmup,
    }


def count_flops(step: Callable[[], object]) -> int:
    """Floating-point operations of one call of `step` (forward + backward), counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return int(counter.get_total_flops())
