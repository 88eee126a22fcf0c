"""Training cost measured on the live trainer: images/s of the training steps and peak memory of the process."""

from __future__ import annotations

import resource
import sys
import time

import torch
from ignite.engine import Engine, Events
from monai.utils import CommonKeys


def peak_memory_mb(device: torch.device | str) -> tuple[float, str]:
    """-> (peak MiB, kind): CUDA max_memory_allocated on a GPU, else the process's peak resident set size."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10), "cpu_peak_rss"


class TrainThroughput:
    """Time each training iteration (ITERATION_STARTED -> ITERATION_COMPLETED, data loading excluded) and count images.

    `images_per_s` = images / summed step seconds, leaving out the first step when there are more (it carries
    one-off costs: lazy allocation, kernel selection); on CUDA the device is synchronised at both ends of a step.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.images, self.seconds, self.iterations = 0, 0.0, 0
        self.first_images, self.first_seconds = 0, 0.0
        self._t0 = 0.0

    def attach(self, engine: Engine) -> None:
        """Register the step timers on a trainer (first in line at ITERATION_STARTED, last at ITERATION_COMPLETED)."""
        engine.add_event_handler(Events.STARTED, self._reset_memory)
        engine.add_event_handler(Events.ITERATION_STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._stop)

    def _sync(self) -> None:
        if self.device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.synchronize(self.device)

    def _reset_memory(self, engine: Engine) -> None:
        if self.device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats(self.device)

    def _start(self, engine: Engine) -> None:
        self._sync()
        self._t0 = time.perf_counter()

    def _stop(self, engine: Engine) -> None:
        self._sync()
        seconds = time.perf_counter() - self._t0
        batch = engine.state.batch  # MONAI has decollated it into a list of items by now
        n = len(batch) if isinstance(batch, list) else int(batch[CommonKeys.IMAGE].shape[0])
        if self.iterations == 0:
            self.first_images, self.first_seconds = n, seconds
        else:
            self.images, self.seconds = self.images + n, self.seconds + seconds
        self.iterations += 1

    @property
    def images_per_s(self) -> float:
        """Training images per second of step time, first step left out when there are more (0.0 before any)."""
        if self.iterations > 1 and self.seconds > 0:
            return self.images / self.seconds
        return self.first_images / self.first_seconds if self.first_seconds > 0 else 0.0

    def summary(self) -> dict:
        """{train_images, train_step_seconds, train_iterations, train_images_per_s, peak_memory_mb, memory_kind}."""
        mem, kind = peak_memory_mb(self.device)
        return {"train_images": self.images + self.first_images, "train_iterations": self.iterations,
                "train_step_seconds": round(self.seconds + self.first_seconds, 3),
                "first_step_seconds": round(self.first_seconds, 3), "train_images_per_s": round(self.images_per_s, 3),
                "peak_memory_mb": round(mem, 1), "memory_kind": kind}
