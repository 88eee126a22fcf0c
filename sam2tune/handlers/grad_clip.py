"""Gradient clipping for MONAI's SupervisedTrainer (which has accumulation and AMP but no clipping)."""

from __future__ import annotations

import torch
from ignite.engine import Engine
from monai.engines.utils import IterationEvents


class GradientClipping:
    """Clip the global gradient norm right before each optimizer step (after AMP unscaling)."""

    def __init__(self, max_norm: float = 1.0, norm_type: float = 2.0) -> None:
        if max_norm <= 0:
            raise ValueError(f"max_norm must be > 0, got {max_norm} (config key: grad_clip).")
        self.max_norm, self.norm_type = max_norm, norm_type

    def attach(self, engine: Engine) -> None:
        """Register on BACKWARD_COMPLETED, which SupervisedTrainer fires before optimizer.step()."""
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def _will_step(self, engine: Engine) -> bool:
        acc = getattr(engine, "accumulation_steps", 1)
        if acc <= 1:
            return True
        length = engine.state.epoch_length
        local = (engine.state.iteration - 1) % length if length else engine.state.iteration - 1
        return (local + 1) % acc == 0 or (length is not None and local + 1 == length)

    def __call__(self, engine: Engine) -> None:
        """Unscale (AMP) and clip gradients when this iteration ends with an optimizer step."""
        if not self._will_step(engine):
            return
        scaler = getattr(engine, "scaler", None)
        if scaler is not None and getattr(engine, "amp", False):
            scaler.unscale_(engine.optimizer)
        params = [p for g in engine.optimizer.param_groups for p in g["params"] if p.grad is not None]
        engine.state.grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.max_norm, self.norm_type))
