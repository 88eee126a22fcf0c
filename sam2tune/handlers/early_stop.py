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
    state_dict() / load_state_dict() (patience counter, best score, whether it stopped) let ResumableCheckpoint
    resume a run with the patience it had, so the resumed run stops where the uninterrupted one would.

    Args:
        validator: the evaluator whose metrics are read.
        metric: the metric name (e.g. "val_mean_dice").
        patience: validations without improvement before stopping (>= 1).
        min_delta: smallest increase that counts as improvement.
    """

    def __init__(self, validator: Engine, metric: str, patience: int = 10, min_delta: float = 0.0) -> None:
        if (isinstance(patience, bool) or not isinstance(patience, int | float) or patience < 1
                or patience != int(patience)):
            raise ValueError(f"patience must be an integer >= 1, got {patience!r} (config key: early_stop_patience).")
        self.validator, self.metric, self.patience, self.min_delta = validator, metric, int(patience), float(min_delta)
        self.stopped_early = False
        self._stopper: EarlyStopping | None = None
        self._pending: dict | None = None  # a state loaded before attach

    def _score(self, _: Engine) -> float:
        metrics = self.validator.state.metrics
        if self.metric not in metrics:
            raise KeyError(f"Early stopping metric {self.metric!r} not among validation metrics {sorted(metrics)}.")
        return float(metrics[self.metric])

    def attach(self, engine: Engine) -> None:
        """Check after each epoch in which validation ran.

        Args:
            engine: the trainer to stop.
        """
        self._stopper = EarlyStopping(self.patience, self._score, engine, min_delta=self.min_delta)
        if self._pending is not None:
            self.load_state_dict(self._pending)

        def check(e: Engine) -> None:
            if self.validator.state.epoch == e.state.epoch and self.validator.state.metrics:
                self._stopper(e)
                if e.should_terminate and not self.stopped_early:
                    self.stopped_early = True
                    e.state.stopped_early = True
                    logger.info("Early stop at epoch %d: no %s gain > %g in %d validations.", e.state.epoch,
                                self.metric, self.min_delta, self.patience)

        engine.add_event_handler(Events.EPOCH_COMPLETED, check)

    def state_dict(self) -> dict:
        """-> {"stopped_early": bool, "early_stopping": ignite EarlyStopping's state_dict (counter, best score, ...)}.

        Returns:
            Numbers, strings and a bool (best_score is None before the first validation).
        """
        stopper = (dict(self._stopper.state_dict()) if self._stopper is not None
                   else (self._pending or {}).get("early_stopping"))
        return {"stopped_early": bool(self.stopped_early), "early_stopping": stopper}

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict() returned (before attach: applied when attached).

        Args:
            state: a state_dict() (from a checkpoint).
        """
        self.stopped_early = bool(state["stopped_early"])
        if self._stopper is None:
            self._pending = dict(state)
        elif state.get("early_stopping") is not None:
            self._stopper.load_state_dict(state["early_stopping"])
