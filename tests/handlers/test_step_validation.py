"""StepValidation: validates every N steps, tracks the best with min_delta, early-stops through ignite EarlyStopping."""

from __future__ import annotations

import pytest
from ignite.engine import Engine, Events

from sam2tune.handlers.step_validation import StepValidation, StepValidationEvents


def _engines(scores: list[float], max_epochs: int = 1, epoch_length: int = 20):
    """A trainer doing nothing per step and a validator whose k-th run reports scores[k] as val_mean_iou."""
    trainer = Engine(lambda e, b: None)
    validator = Engine(lambda e, b: None)
    runs = iter(scores)

    @validator.on(Events.COMPLETED)
    def _metric(engine):
        engine.state.metrics = {"val_mean_iou": next(runs), "val_mean_dice": 0.5}

    data = list(range(epoch_length))
    # MONAI's Evaluator.run takes the trainer's epoch; ignite's Engine.run takes the data: adapt for the test.
    validator.run = lambda epoch, _run=validator.run: _run([0], max_epochs=1)
    return trainer, validator, data


def test_validates_every_interval_and_fires_event():
    trainer, validator, data = _engines([0.1 * i for i in range(1, 6)], epoch_length=10)
    handler = StepValidation(validator, interval=3, metric="val_mean_iou", patience=0)
    handler.attach(trainer)
    seen = []
    trainer.add_event_handler(StepValidationEvents.VALIDATION_COMPLETED,
                              lambda e: seen.append(dict(e.state.step_validation)))
    trainer.run(data, max_epochs=1)
    # steps 3, 6, 9 by interval, then 10 because the last step was not validated
    assert [s["step"] for s in seen] == [3, 6, 9, 10]
    assert all(s["is_best"] for s in seen) and seen[-1]["best_step"] == 10


def test_early_stop_with_patience_and_min_delta():
    # gains under min_delta 1e-4 over the best do not count: best stays at step 4, stop after 3 more validations
    scores = [0.5, 0.6, 0.60005, 0.60008, 0.6, 0.9, 0.9]
    trainer, validator, data = _engines(scores, epoch_length=20)
    handler = StepValidation(validator, interval=2, metric="val_mean_iou", patience=3, min_delta=1e-4)
    handler.attach(trainer)
    trainer.run(data, max_epochs=1)
    assert handler.stopped_early and trainer.state.iteration == 10
    assert (handler.best_step, handler.best_score) == (4, pytest.approx(0.6))
    assert trainer.state.stopped_early


def test_bad_arguments_name_the_key():
    with pytest.raises(ValueError, match="val_interval"):
        StepValidation(Engine(lambda e, b: None), interval=0)
    trainer, validator, data = _engines([0.1])
    StepValidation(validator, interval=1, metric="val_nope").attach(trainer)
    with pytest.raises(KeyError, match="val_nope"):
        trainer.run(data[:1], max_epochs=1)


def test_epoch_interval_also_validates_at_epoch_ends():
    """val_interval (epochs, as in every bundle) beside val_interval_steps: epoch ends 10 and 20 are validated too,
    without validating step 9's neighbour twice; the final step is not repeated."""
    trainer, validator, data = _engines([0.1 * i for i in range(1, 20)], epoch_length=10)
    handler = StepValidation(validator, interval=3, metric="val_mean_iou", patience=0, epoch_interval=1)
    handler.attach(trainer)
    seen = []
    trainer.add_event_handler(StepValidationEvents.VALIDATION_COMPLETED,
                              lambda e: seen.append(e.state.step_validation["step"]))
    trainer.run(data, max_epochs=2)
    assert seen == [3, 6, 9, 10, 12, 15, 18, 20]


def test_epoch_interval_must_not_be_negative():
    with pytest.raises(ValueError, match="config key: val_interval"):
        StepValidation(Engine(lambda e, b: None), interval=1, epoch_interval=-1)
