"""StepCheckpoint: a killed step-validated run resumes to the same result as an uninterrupted one."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from sam2tune.handlers.step_checkpoint import StepCheckpoint
from sam2tune.handlers.step_validation import StepValidation

# val score by trainer step: best at step 4, then no gain > min_delta -> with patience 3, stop at step 10
SCORES = {2: 0.5, 4: 0.6, 6: 0.60005, 8: 0.55, 10: 0.6, 12: 0.9, 14: 0.95}


class _Killed(RuntimeError):
    pass


def _run(ckpt_dir: str, kill_at: int | None = None, max_epochs: int = 2) -> dict:
    """Fresh network/optimizer/scheduler/handlers as a new process would build them, then train (maybe killed)."""
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)  # momentum: the optimizer state matters
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)

    def step(engine, batch):
        x = torch.full((2, 3), float(batch))
        loss = (net(x) - 1.0).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        return loss.item()

    trainer, validator = Engine(step), Engine(lambda e, b: None)
    validator.add_event_handler(Events.COMPLETED, lambda e: setattr(e.state, "metrics", {"val_mean_iou": SCORES[trainer.state.iteration]}))
    validator.run = lambda epoch, _run=validator.run: _run([0], max_epochs=1)
    validation = StepValidation(validator, interval=2, patience=3, min_delta=1e-4)
    validation.attach(trainer)
    StepCheckpoint(ckpt_dir, {"network": net, "optimizer": opt, "lr_scheduler": sched, "step_validation": validation},
                   interval=2).attach(trainer)
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


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    whole = _run(str(tmp_path / "a"))
    assert whole["v"].stopped_early and whole["iteration"] == 10 and whole["v"].best_step == 4

    killed = _run(str(tmp_path / "b"), kill_at=7)  # mid-epoch; last checkpoint at step 6
    assert killed["ran"] == list(range(1, 8))
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["checkpoint_6.pt"]
    resumed = _run(str(tmp_path / "b"))
    assert resumed["ran"] == [7, 8, 9, 10], "steps 1..6 are not redone; 7 (after the checkpoint) is"
    # early-stopping counter and best score came back: it stops at the same step with the same best
    assert resumed["v"].stopped_early and (resumed["v"].best_step, resumed["v"].best_score) == (4, pytest.approx(0.6))
    # model, momentum and LR schedule came back: same weights and LR as the run that was never killed
    assert torch.allclose(resumed["weight"], whole["weight"], atol=1e-6) and resumed["lr"] == whole["lr"]


def test_early_stopped_run_is_not_trained_again(tmp_path):
    _run(str(tmp_path))
    again = _run(str(tmp_path), max_epochs=3)
    assert again["ran"] == [] and again["v"].stopped_early and again["iteration"] == 10


def test_resume_false_starts_over_and_bad_checkpoint_is_named(tmp_path):
    _run(str(tmp_path), kill_at=3)
    torch.save({"network": {}}, tmp_path / "checkpoint_99.pt")
    with pytest.raises(ValueError, match="checkpoint_99.pt lacks"):
        _run(str(tmp_path))
    with pytest.raises(ValueError, match="checkpoint_interval"):
        StepCheckpoint(str(tmp_path), {}, interval=0)
