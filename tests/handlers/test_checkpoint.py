"""ResumableCheckpoint, one handler for epoch and step units: a killed run resumes to what the uninterrupted run had.

Epoch unit: a MONAI SupervisedTrainer + SupervisedEvaluator with a scripted validation metric, ModelExport and
EarlyStopOnMetric, killed after its best epoch and resumed into worse epochs. Step unit: a plain ignite loop with
StepValidation (the steel bundle's wiring).
"""

from __future__ import annotations

import logging
import os
import shutil

import pytest
import torch
from ignite.engine import Engine, Events
from ignite.metrics import Metric

from sam2tune.handlers import EarlyStopOnMetric, ModelExport, ResumableCheckpoint, latest_checkpoint
from sam2tune.handlers.step_validation import StepValidation


class _Killed(RuntimeError):
    """Stands in for a kill -9 after an event (no COMPLETED handlers run)."""


# ---- epoch unit: MONAI trainer + evaluator ---------------------------------------------------------------------------
# validation score by epoch: best at 2; no gain at 3, 4, 5 -> with patience 3 the run stops at epoch 5. Epochs 6-8
# would score higher: a resumed run that forgot its patience would train into them and export another model.pt.
EPOCH_SCORES = {1: 0.3, 2: 0.8, 3: 0.5, 4: 0.6, 5: 0.7, 6: 0.9, 7: 0.95, 8: 0.99}


class _ScriptedMetric(Metric):
    """A validation metric whose value is scripted by epoch (MONAI's evaluator tracks best_metric on it)."""

    def __init__(self, scores: dict[int, float]) -> None:
        self.scores = scores
        super().__init__(output_transform=lambda output: 0.0)

    def reset(self) -> None:
        pass

    def update(self, output) -> None:
        pass

    def compute(self) -> float:
        raise NotImplementedError  # completed() sets the value from the epoch

    def completed(self, engine: Engine, name: str) -> None:
        engine.state.metrics[name] = self.scores[engine.state.epoch]


def _epoch_run(root, kill_after: int | None = None, resume="true", scores=EPOCH_SCORES) -> dict:
    """Build everything as a new process would (same seed), train up to 8 epochs (maybe killed) -> what happened."""
    from monai.data import DataLoader, Dataset
    from monai.engines import SupervisedEvaluator, SupervisedTrainer
    from monai.handlers import ValidationHandler
    from monai.utils import set_determinism

    set_determinism(0)
    data = [{"image": torch.full((4,), float(i)), "label": torch.full((1,), 0.1 * i)} for i in range(6)]
    loader = DataLoader(Dataset(data), batch_size=2, shuffle=True, num_workers=0)
    net = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(4, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    validator = SupervisedEvaluator(device="cpu", val_data_loader=DataLoader(Dataset(data[:2]), batch_size=2),
                                    network=net, key_val_metric={"val_mean_dice": _ScriptedMetric(scores)})
    early_stop = EarlyStopOnMetric(validator, "val_mean_dice", patience=3)
    ckpt_dir = str(root)
    handlers = [
        ValidationHandler(validator=validator, interval=1, epoch_level=True),
        early_stop,
        ModelExport(ckpt_dir, net, validator),
        ResumableCheckpoint(ckpt_dir, {"network": net, "optimizer": opt, "early_stop": early_stop}, every=1,
                            unit="epoch", resume=resume, validator=validator),
    ]
    trainer = SupervisedTrainer(device="cpu", max_epochs=8, train_data_loader=loader, network=net, optimizer=opt,
                                loss_function=torch.nn.MSELoss(), train_handlers=handlers)
    ran = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: ran.append(e.state.epoch))
    if kill_after:
        @trainer.on(Events.EPOCH_COMPLETED(once=kill_after))
        def _kill(_):
            raise _Killed

    try:
        trainer.run()
    except _Killed:
        pass
    set_determinism(None)
    return {"ran": ran, "epoch": trainer.state.epoch,
            "best": (validator.state.best_metric, validator.state.best_metric_epoch),
            "weight": net[1].weight.detach().clone(), "model": (root / "model.pt").read_bytes(),
            "early_stop": early_stop}


def test_resume_keeps_the_best_model_and_stops_where_the_uninterrupted_run_stopped(tmp_path):
    whole = _epoch_run(tmp_path / "whole")
    assert whole["ran"] == [1, 2, 3, 4, 5] and whole["best"] == (0.8, 2)

    killed = _epoch_run(tmp_path / "killed", kill_after=3)  # best at 2, one epoch without gain, then killed
    assert (killed["ran"] == [1, 2, 3]
            and os.path.basename(latest_checkpoint(str(tmp_path / "killed"))) == "checkpoint_9.pt")
    best_model = killed["model"]
    resumed = _epoch_run(tmp_path / "killed")
    assert resumed["ran"] == [4, 5], "patience came back: the resumed run stops at epoch 5, as the uninterrupted one"
    assert resumed["best"] == (0.8, 2) and resumed["early_stop"].stopped_early
    # the worse epochs 4 and 5 did not replace model.pt: still the epoch-2 model, the same bytes as the whole run's
    assert resumed["model"] == best_model == whole["model"]
    assert torch.equal(resumed["weight"], whole["weight"]), "network, momentum and random draws came back"

    # started again, the early-stopped run trains no further and leaves model.pt alone
    again = _epoch_run(tmp_path / "killed")
    assert again["ran"] == [] and again["model"] == best_model


def test_resume_string_false_starts_over(tmp_path):
    _epoch_run(tmp_path, kill_after=3)
    fresh = _epoch_run(tmp_path, resume="false")  # what `--resume false` hands the handler
    assert fresh["ran"] == [1, 2, 3, 4, 5] and fresh["best"] == (0.8, 2)
    assert ResumableCheckpoint(str(tmp_path), {}, resume="False").resume is False
    with pytest.raises(ValueError, match="resume must be true or false"):
        ResumableCheckpoint(str(tmp_path), {}, resume="nope")


def test_checkpoint_of_an_older_sam2tune_resumes_with_a_warning(tmp_path, caplog):
    _epoch_run(tmp_path, kill_after=3)
    path = latest_checkpoint(str(tmp_path))
    state = torch.load(path, weights_only=True)
    assert {"network", "optimizer", "early_stop", "trainer", "rng", "validator", "progress"} <= set(state)
    for key in ("validator", "early_stop"):
        del state[key]
    torch.save(state, path)
    with caplog.at_level(logging.WARNING, logger="sam2tune.handlers.checkpoint"):
        resumed = _epoch_run(tmp_path)
    assert "holds no ['early_stop', 'validator']" in caplog.text
    assert resumed["ran"][0] == 4 and resumed["best"][1] != 2, (
        "without the saved best the next validation counts as best"
    )


# ---- step unit: StepValidation (the steel bundle's wiring) -----------------------------------------------------------
# val score by trainer step: best at step 4, then no gain > min_delta -> with patience 3, stop at step 10
STEP_SCORES = {2: 0.5, 4: 0.6, 6: 0.60005, 8: 0.55, 10: 0.6, 12: 0.9, 14: 0.95}


def _step_run(ckpt_dir: str, kill_at: int | None = None, max_epochs: int = 2, resume=True) -> dict:
    """Fresh network/optimizer/scheduler/handlers as a new process would build them, then train (maybe killed)."""
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)  # momentum: the optimizer state matters
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)

    def step(engine, batch):
        x = torch.full((2, 3), float(batch)) + 0.01 * torch.randn(2, 3)  # draws from torch's global generator
        loss = (net(x) - 1.0).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        return loss.item()

    trainer, validator = Engine(step), Engine(lambda e, b: None)
    validator.add_event_handler(
        Events.COMPLETED,
        lambda e: setattr(e.state, "metrics", {"val_mean_iou": STEP_SCORES[trainer.state.iteration]}),
    )
    validator.run = lambda epoch, _run=validator.run: _run([0], max_epochs=1)
    validation = StepValidation(validator, interval=2, patience=3, min_delta=1e-4)
    validation.attach(trainer)
    ResumableCheckpoint(ckpt_dir,
                        {"network": net, "optimizer": opt, "lr_scheduler": sched, "step_validation": validation},
                        every=2, unit="step", resume=resume).attach(trainer)
    ran = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: ran.append(e.state.iteration))
    if kill_at:
        @trainer.on(Events.ITERATION_COMPLETED(once=kill_at))
        def _kill(_):
            raise _Killed

    try:
        # one batch repeated: a mid-epoch resume starts that epoch's data over (plain ignite Engine), so only
        # equal batches make the killed and the whole run comparable weight for weight
        trainer.run([0.5] * 8, max_epochs=max_epochs)
    except _Killed:
        pass
    return {"ran": ran, "weight": net.weight.detach().clone(), "lr": opt.param_groups[0]["lr"], "v": validation,
            "iteration": trainer.state.iteration}


def test_step_unit_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    whole = _step_run(str(tmp_path / "a"))
    assert whole["v"].stopped_early and whole["iteration"] == 10 and whole["v"].best_step == 4

    killed = _step_run(str(tmp_path / "b"), kill_at=7)  # mid-epoch; last checkpoint at step 6
    assert killed["ran"] == list(range(1, 8))
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["checkpoint_6.pt"]
    resumed = _step_run(str(tmp_path / "b"))
    assert resumed["ran"] == [7, 8, 9, 10], "steps 1..6 are not redone; 7 (after the checkpoint) is"
    # early-stopping counter and best score came back: it stops at the same step with the same best
    assert resumed["v"].stopped_early and (resumed["v"].best_step, resumed["v"].best_score) == (4, pytest.approx(0.6))
    # model, momentum, LR schedule and the global random stream came back: the weights of the run never killed
    assert torch.allclose(resumed["weight"], whole["weight"], atol=1e-6) and resumed["lr"] == whole["lr"]
    state = torch.load(tmp_path / "b" / "checkpoint_10.pt", weights_only=True)
    assert {"rng", "trainer", "step_validation", "progress"} <= set(state) and state["progress"]["stopped_early"]


def test_step_unit_early_stopped_run_is_not_trained_again(tmp_path):
    _step_run(str(tmp_path))
    again = _step_run(str(tmp_path), max_epochs=3)
    assert again["ran"] == [] and again["v"].stopped_early and again["iteration"] == 10
    fresh = _step_run(str(tmp_path), resume="false")
    assert fresh["ran"] == list(range(1, 11))


def test_bad_checkpoint_and_settings_are_named(tmp_path):
    _step_run(str(tmp_path), kill_at=3)
    torch.save({"network": {}}, tmp_path / "checkpoint_99.pt")
    with pytest.raises(ValueError, match=r"checkpoint_99.pt lacks \['optimizer', 'trainer'\].*--resume false"):
        _step_run(str(tmp_path))
    with pytest.raises(ValueError, match="checkpoint_every"):
        ResumableCheckpoint(str(tmp_path), {}, every=0)
    with pytest.raises(ValueError, match="unit must be one of epoch, step.*checkpoint_unit"):
        ResumableCheckpoint(str(tmp_path), {}, unit="iteration")
    with pytest.raises(ValueError, match="must not name \\['trainer'\\]"):
        ResumableCheckpoint(str(tmp_path), {"trainer": object()})


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    shutil.rmtree(tmp_path)
    _step_run(str(tmp_path), max_epochs=1)  # 8 steps, saves at 2, 4, 6, 8
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_8.pt"]
