"""Early stopping on a validation metric, attached to the trainer (no trainer<->evaluator reference cycle in JSON)."""

from __future__ import annotations

import logging

from ignite.engine import Engine, Events
from ignite.handlers import EarlyStopping

logger = logging.getLogger(__name__)


class EarlyStopOnMetric:
    """Stop the trainer it is attached to when `validator`'s `metric` has not improved for `patience` validations.

    MONAI's EarlyStopHandler needs the trainer at construction, which a bundle config cannot give the validator
    without a reference cycle; this wraps ignite's EarlyStopping with the trainer taken at attach time.
    """

    def __init__(self, validator: Engine, metric: str, patience: int = 10, min_delta: float = 0.0) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience} (config key: early_stop_patience).")
        self.validator, self.metric, self.patience, self.min_delta = validator, metric, patience, min_delta

    def _score(self, _: Engine) -> float:
        metrics = self.validator.state.metrics
        if self.metric not in metrics:
            raise KeyError(f"Early stopping metric {self.metric!r} not among validation metrics {sorted(metrics)}.")
        return float(metrics[self.metric])

    def attach(self, engine: Engine) -> None:
        """Check after each epoch in which validation ran."""
        stopper = EarlyStopping(self.patience, self._score, engine, min_delta=self.min_delta)

        def check(e: Engine) -> None:
            if self.validator.state.epoch == e.state.epoch and self.validator.state.metrics:
                stopper(e)

        engine.add_event_handler(Events.EPOCH_COMPLETED, check)
