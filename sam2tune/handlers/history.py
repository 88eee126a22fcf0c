"""Per-epoch training history (JSON) and the curves drawn from it, rank 0 only, resume-aware."""

from __future__ import annotations

import json
import logging
import math
import os

from ignite.engine import Engine, Events

from sam2tune.plots.curves import plot_training_history
from sam2tune.utils.atomic import atomic_write_json
from sam2tune.utils.dist import is_rank0

logger = logging.getLogger(__name__)


class TrainingHistory:
    """Append {epoch, train_loss, lr, lr_<group>, val metrics} to training_history.json, redraw the PNG each epoch."""

    def __init__(self, output_dir: str, validator: Engine | None = None, plot: bool = True,
                 extra: dict | None = None) -> None:
        self.output_dir, self.validator, self.plot, self.extra = str(output_dir), validator, plot, extra or {}
        self.path = os.path.join(self.output_dir, "training_history.json")
        self._losses: list[float] = []

    def attach(self, engine: Engine) -> None:
        """Collect iteration losses and write a record at each epoch end (after validation handlers)."""
        engine.add_event_handler(Events.EPOCH_STARTED, lambda e: self._losses.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._record)

    def _collect(self, engine: Engine) -> None:
        out = engine.state.output
        loss = out[0]["loss"] if isinstance(out, list) else out["loss"]
        self._losses.append(float(loss))

    def records(self) -> list[dict]:
        """Records already on disk (an empty list if none or unreadable)."""
        try:
            with open(self.path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return []

    def _record(self, engine: Engine) -> None:
        if not is_rank0():
            return
        epoch = engine.state.epoch
        rec: dict = {"epoch": epoch, "iteration": engine.state.iteration}
        rec["train_loss"] = sum(self._losses) / len(self._losses) if self._losses else math.nan
        groups = engine.optimizer.param_groups if hasattr(engine, "optimizer") else []
        for i, g in enumerate(groups):
            rec[f"lr_{g.get('name', i)}"] = g["lr"]
        if groups:
            rec["lr"] = groups[-1]["lr"]  # the main (decoder) group is last by convention of param_groups()
        if self.validator is not None and self.validator.state.epoch == epoch:
            rec.update({(k if k.startswith("val_") else f"val_{k}"): float(v)
                        for k, v in self.validator.state.metrics.items()})
        for k, fn in self.extra.items():
            rec[k] = fn(engine) if callable(fn) else fn
        # Resume-aware: drop records from epochs at or after this one (a resumed run rewrites them).
        history = [r for r in self.records() if r.get("epoch", 0) < epoch] + [rec]
        atomic_write_json(history, self.path)
        msg = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items())
        logger.info("epoch %d: %s", epoch, msg)
        if self.plot:
            plot_training_history(self.path, os.path.join(self.output_dir, "training_curves.png"))
