"""Validation every N training steps, with best-score tracking and ignite EarlyStopping on a validation metric."""

from __future__ import annotations

import logging
import math

from ignite.engine import Engine, EventEnum, Events
from ignite.handlers import EarlyStopping

logger = logging.getLogger(__name__)


class StepValidationEvents(EventEnum):
    """Fired on the trainer after each step-level validation; `trainer.state.step_validation` holds the result."""

    VALIDATION_COMPLETED = "step_validation_completed"


def register_step_events(engine: Engine) -> None:
    """Make StepValidationEvents known to `engine` (idempotent, so any handler may call it in attach)."""
    if StepValidationEvents.VALIDATION_COMPLETED not in engine._allowed_events:
        engine.register_events(*StepValidationEvents)


class StepValidation:
    """Run `validator` every `interval` trainer iterations (and once at the end if the last step was not validated).

    After each run it writes `trainer.state.step_validation = {"step", "epoch", "metrics", "score", "is_best",
    "best_score", "best_step"}` and fires StepValidationEvents.VALIDATION_COMPLETED, which StepOutputs and
    TrainingCSVLog listen to. Early stopping uses ignite's EarlyStopping on `metric` (patience counted in validations,
    improvement = more than `min_delta`).

    Args:
        validator: the MONAI SupervisedEvaluator.
        interval: validate every this many training steps (iterations); >= 1 (config key: val_interval_steps).
        epoch_interval: also validate at the end of every this many epochs (unless that step was just validated);
            0 turns it off (config key: val_interval, epochs as in every bundle).
        metric: the validator metric to select and early-stop on (e.g. "val_mean_iou").
        patience: validations without improvement before stopping; 0 disables early stopping.
        min_delta: smallest increase that counts as improvement.
    """

    def __init__(self, validator: Engine, interval: int = 100, metric: str = "val_mean_iou", patience: int = 7,
                 min_delta: float = 1e-4, epoch_interval: int = 0) -> None:
        if int(interval) < 1:
            raise ValueError(f"interval must be >= 1 training steps, got {interval} (config key: val_interval_steps).")
        if int(epoch_interval) < 0:
            raise ValueError(f"epoch_interval must be >= 0 epochs (0 = off), got {epoch_interval} "
                             "(config key: val_interval).")
        if int(patience) < 0:
            raise ValueError(f"patience must be >= 0 (0 = no early stopping), got {patience} "
                             "(config key: early_stop_patience).")
        self.validator, self.interval, self.metric = validator, int(interval), metric
        self.epoch_interval = int(epoch_interval)
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.best_score, self.best_step = -math.inf, -1
        self.last_step = -1
        self.stopped_early = False
        self._stopper: EarlyStopping | None = None

    def attach(self, engine: Engine) -> None:
        """Validate every `interval` iterations and at COMPLETED when the final step has not been validated."""
        register_step_events(engine)
        if self.patience > 0:
            # ignite's EarlyStopping reads the score through this function and calls engine.terminate() itself;
            # cumulative_delta: gains are measured from the best score, the same rule that picks the best checkpoint.
            self._stopper = EarlyStopping(self.patience, self._score, engine, min_delta=self.min_delta,
                                          cumulative_delta=True)
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self.validate)
        if self.epoch_interval:
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.epoch_interval), self._final)
        engine.add_event_handler(Events.COMPLETED, self._final)

    def state_dict(self) -> dict:
        """Best score/step, last validated step, early-stop flag and ignite EarlyStopping's counter (for resume)."""
        return {"best_score": self.best_score, "best_step": self.best_step, "last_step": self.last_step,
                "stopped_early": self.stopped_early,
                "early_stopping": dict(self._stopper.state_dict()) if self._stopper is not None else None}

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict() returned (call after attach, so the EarlyStopping exists)."""
        self.best_score, self.best_step = float(state["best_score"]), int(state["best_step"])
        self.last_step, self.stopped_early = int(state["last_step"]), bool(state["stopped_early"])
        if self._stopper is not None and state.get("early_stopping") is not None:
            self._stopper.load_state_dict(state["early_stopping"])

    def _score(self, _: Engine) -> float:
        metrics = self.validator.state.metrics
        if self.metric not in metrics:
            raise KeyError(
                f"Step validation metric {self.metric!r} is not among the validation metrics {sorted(metrics)}."
            )
        return float(metrics[self.metric])

    def _final(self, engine: Engine) -> None:
        """Validate now unless this step was validated already or training stopped early."""
        if self.last_step != engine.state.iteration and not self.stopped_early:
            self.validate(engine)

    def validate(self, engine: Engine) -> dict:
        """Run the validator now -> the result dict also stored on `engine.state.step_validation`."""
        step = engine.state.iteration
        self.validator.run(engine.state.epoch)
        score = self._score(engine)
        # Same rule as ignite's EarlyStopping: an improvement must exceed min_delta.
        is_best = score > self.best_score + self.min_delta if math.isfinite(self.best_score) else True
        if is_best:
            self.best_score, self.best_step = score, step
        self.last_step = step
        result = {
            "step": step, "epoch": engine.state.epoch, "score": score, "is_best": is_best,
            "best_score": self.best_score, "best_step": self.best_step,
            "metrics": {k: float(v) for k, v in self.validator.state.metrics.items() if isinstance(v, int | float)},
        }
        engine.state.step_validation = result
        logger.info("step %d: %s %.4f (best %.4f at step %d)", step, self.metric, score, self.best_score,
                    self.best_step)
        engine.fire_event(StepValidationEvents.VALIDATION_COMPLETED)
        if self._stopper is not None:
            self._stopper(engine)
            if engine.should_terminate:
                self.stopped_early = True
                engine.state.stopped_early = True
                logger.info("Early stop at step %d: no %s gain > %g in %d validations.", step, self.metric,
                            self.min_delta, self.patience)
        return result
