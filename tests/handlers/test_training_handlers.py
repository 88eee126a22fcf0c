"""Checkpoint/resume, history and early stopping on a tiny ignite loop (no SAM2 needed)."""

import json
import os

import torch
from ignite.engine import Engine, Events

from sam2tune.handlers import EarlyStopOnMetric, ResumableCheckpoint, TrainingHistory, latest_checkpoint


def _trainer(model, opt):
    def step(engine, batch):
        opt.zero_grad()
        loss = model(batch).pow(2).mean()
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    engine = Engine(step)
    engine.optimizer = opt
    return engine


def test_resume_from_latest_checkpoint(tmp_path):
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = _trainer(model, opt)
    ResumableCheckpoint(str(tmp_path), {"network": model, "optimizer": opt}).attach(trainer)
    trainer.run([torch.ones(1, 2)] * 3, max_epochs=2)
    path = latest_checkpoint(str(tmp_path))
    assert path and path.endswith("_6.pt") and len(os.listdir(tmp_path)) == 1
    saved = torch.load(path, weights_only=True)
    assert saved["trainer"]["iteration"] == 6 and saved["trainer"]["max_epochs"] == 2

    model2 = torch.nn.Linear(2, 1)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1)
    trainer2 = _trainer(model2, opt2)
    seen = []
    trainer2.add_event_handler(Events.EPOCH_STARTED, lambda e: seen.append(e.state.epoch))
    ResumableCheckpoint(str(tmp_path), {"network": model2, "optimizer": opt2}).attach(trainer2)
    trainer2.run([torch.ones(1, 2)] * 3, max_epochs=3)
    assert seen == [3], "a resumed run continues at the next epoch"


def test_history_records_and_resume_truncation(tmp_path):
    model = torch.nn.Linear(2, 1)
    trainer = _trainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    TrainingHistory(str(tmp_path)).attach(trainer)
    trainer.run([torch.ones(1, 2)] * 2, max_epochs=3)
    records = json.loads((tmp_path / "training_history.json").read_text())
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[0]["lr"] == 0.1 and records[2]["train_loss"] < records[0]["train_loss"]
    assert (tmp_path / "training_curves.png").stat().st_size > 1000
    # A run that restarts at epoch 2 replaces the records from epoch 2 on.
    trainer2 = _trainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    TrainingHistory(str(tmp_path), plot=False).attach(trainer2)
    trainer2.add_event_handler(Events.STARTED, lambda e: setattr(e.state, "epoch", 1))
    trainer2.run([torch.ones(1, 2)] * 2, max_epochs=2)
    assert [r["epoch"] for r in json.loads((tmp_path / "training_history.json").read_text())] == [1, 2]


def test_early_stop_on_stalled_metric():
    model = torch.nn.Linear(2, 1)
    trainer = _trainer(model, torch.optim.SGD(model.parameters(), lr=0.0))
    validator = Engine(lambda e, b: None)

    def validate(engine):
        validator.state.epoch = engine.state.epoch
        validator.state.metrics = {"val_mean_dice": 0.5}

    trainer.add_event_handler(Events.EPOCH_COMPLETED, validate)
    EarlyStopOnMetric(validator, "val_mean_dice", patience=2).attach(trainer)
    trainer.run([torch.ones(1, 2)], max_epochs=10)
    assert trainer.state.epoch == 3  # best at 1, no improvement at 2 and 3 -> stop
