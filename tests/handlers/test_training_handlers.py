"""Checkpoint/resume, history and early stopping on a tiny ignite loop (no SAM2 needed)."""

import glob
import json
import logging
import os
import shutil

import numpy as np
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


class _JitterBatch:
    """prepare_batch with its own NumPy generator (as the BTCV window prompts have): x + jitter -> (input, target)."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def __call__(self, batch, device=None, non_blocking=False, **kwargs):
        x = batch["x"] + torch.as_tensor(self.rng.normal(size=batch["x"].shape), dtype=torch.float32)
        return x, x.sum(-1, keepdim=True) * 0.1


def _random_run(ckpt_dir: str, max_epochs: int, n_saved: int = 1) -> torch.Tensor:
    """A MONAI SupervisedTrainer drawing from every kind of generator -> final weights.

    Shuffled sampler and dropout (torch's global RNG), a MONAI random transform (its own RandomState), a
    prepare_batch with a NumPy Generator: a new process builds all of it from the same seed, then resumes.
    """
    from monai.data import DataLoader, Dataset
    from monai.engines import SupervisedTrainer
    from monai.transforms import RandGaussianNoised
    from monai.utils import set_determinism

    set_determinism(0)
    data = [{"x": np.full((4,), float(i), np.float32)} for i in range(6)]
    loader = DataLoader(Dataset(data, RandGaussianNoised("x", prob=1.0)), batch_size=2, shuffle=True, num_workers=0)
    net = torch.nn.Sequential(torch.nn.Dropout(0.3), torch.nn.Linear(4, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    trainer = SupervisedTrainer(device="cpu", max_epochs=max_epochs, train_data_loader=loader, network=net,
                                optimizer=opt, loss_function=torch.nn.MSELoss(), prepare_batch=_JitterBatch())
    ResumableCheckpoint(ckpt_dir, {"network": net, "optimizer": opt}, n_saved=n_saved).attach(trainer)
    trainer.run()
    set_determinism(None)
    return net[1].weight.detach().clone()


def test_resumed_run_draws_what_the_uninterrupted_run_drew(tmp_path, caplog):
    whole = _random_run(str(tmp_path / "whole"), max_epochs=3, n_saved=3)
    saved = glob.glob(str(tmp_path / "whole" / "checkpoint_*.pt"))
    after_one = min(saved, key=lambda f: int(f.rsplit("_", 1)[1][:-3]))  # checkpoint_<iteration>.pt
    owned = torch.load(after_one, weights_only=True)["rng"]["owned"]
    assert {"dataset.transform.transforms.0.rand_gaussian_noise.R", "prepare_batch.rng"} <= owned.keys()

    os.makedirs(tmp_path / "killed")
    shutil.copy(after_one, tmp_path / "killed")  # as if the run had been killed after epoch 1
    assert torch.equal(_random_run(str(tmp_path / "killed"), max_epochs=3), whole)

    # a checkpoint without generator state (older sam2tune) still resumes, with a warning, but draws otherwise
    state = torch.load(after_one, weights_only=True)
    del state["rng"]
    os.makedirs(tmp_path / "old")
    torch.save(state, tmp_path / "old" / os.path.basename(after_one))
    with caplog.at_level(logging.WARNING):
        old = _random_run(str(tmp_path / "old"), max_epochs=3)
    assert "holds no ['rng']" in caplog.text
    assert not torch.allclose(old, whole)
