"""Resume for step-based runs: one atomic `checkpoint_{step}.pt` every N steps, loaded back when training starts.

The epoch-level ResumableCheckpoint saves model + optimizer + scheduler + trainer. A step-validated run also keeps
state in its handlers (best score and step, early-stopping counter, the best/latest file names, validations so
far), so this handler saves any object with ``state_dict()`` / ``load_state_dict()`` given in `save_dict` —
StepValidation and StepOutputs implement both — next to the trainer's own state (iteration, epoch).

Attach it after StepValidation and StepOutputs (last in the bundle's handler list): ignite runs an event's handlers
in attach order, so the checkpoint taken at step N then already holds step N's validation and its files.
Handlers that act at STARTED must not depend on the resumed state (TrainingCSVLog trims its files lazily).
"""

from __future__ import annotations

import glob
import logging
import os

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from sam2tune.handlers.checkpoint import PREFIX, latest_checkpoint
from sam2tune.utils.atomic import atomic_torch_save
from sam2tune.utils.dist import is_rank0, unwrap
from sam2tune.utils.flags import as_bool

logger = logging.getLogger(__name__)


class StepCheckpoint:
    """Save `save_dict` + the trainer every `interval` steps and at the end; resume from the newest on start.

    Args:
        ckpt_dir: folder of `checkpoint_{step}.pt` (only the newest is kept).
        save_dict: name -> object with state_dict/load_state_dict (network, optimizer, lr_scheduler, handlers).
            Networks are saved unwrapped (no DDP "module." prefix), so single- and multi-process runs share files.
        interval: save every this many training steps (>= 1); a bundle uses its val_interval.
        resume: load the newest checkpoint in ckpt_dir when training starts.
    """

    def __init__(self, ckpt_dir: str, save_dict: dict, interval: int = 100, resume: bool = True) -> None:
        if int(interval) < 1:
            raise ValueError(f"interval must be >= 1 training steps, got {interval} (config key: checkpoint_interval).")
        if "trainer" in save_dict:
            raise ValueError("save_dict must not name 'trainer': the trainer this handler is attached to is added.")
        self.ckpt_dir, self.save_dict, self.interval = str(ckpt_dir), dict(save_dict), int(interval)
        self.resume = as_bool(resume, "resume")  # `--resume false` arrives as the (truthy) string "false"
        self.resumed_from: str | None = None

    def attach(self, engine: Engine) -> None:
        """Load at STARTED (when resuming and a checkpoint exists); save every `interval` steps and at COMPLETED."""
        self.save_dict["trainer"] = engine
        if self.resume and (path := latest_checkpoint(self.ckpt_dir)):
            self.resumed_from = path
            engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self.save)
        engine.add_event_handler(Events.COMPLETED, self.save)

    def _load_dict(self) -> dict:
        return {k: unwrap(v) if isinstance(v, torch.nn.Module) else v for k, v in self.save_dict.items()}

    def load(self, engine: Engine) -> None:
        """Restore every object of save_dict and the trainer from `self.resumed_from` (all ranks read the file)."""
        checkpoint = torch.load(self.resumed_from, map_location="cpu", weights_only=True)
        missing = sorted(set(self.save_dict) - set(checkpoint))
        if missing:
            raise ValueError(f"Checkpoint {self.resumed_from} lacks {missing} (not written by a step-based run?); "
                             f"remove it or pass --resume False to start over.")
        max_epochs = engine.state.max_epochs  # this config's, which the trainer's state_dict would overwrite
        if checkpoint["trainer"].get("max_epochs") != max_epochs:
            # The scheduler's state (its total steps) comes from the checkpoint: steps past that total follow no
            # planned schedule (the cosine turns back up). Resume is for finishing a run, not lengthening it.
            logger.warning("Checkpoint %s was written with max_epochs=%s, this run has %s; the LR schedule keeps the "
                           "checkpoint's length. To train longer, start a new run (--resume False).",
                           self.resumed_from, checkpoint["trainer"].get("max_epochs"), max_epochs)
        # ignite's load_objects: load_state_dict on each object, DDP-wrapped networks unwrapped, strict keys.
        Checkpoint.load_objects(to_load=self._load_dict(), checkpoint=checkpoint)
        if max_epochs is not None and engine.state.epoch > max_epochs:
            raise ValueError(f"Checkpoint {self.resumed_from} is at epoch {engine.state.epoch}, past max_epochs={max_epochs}.")
        engine.state.max_epochs = max_epochs
        self._report(engine)

    def _report(self, engine: Engine) -> None:
        steps = engine.state.epoch_length * engine.state.max_epochs if engine.state.epoch_length else None
        stopper = next((v for v in self.save_dict.values() if getattr(v, "stopped_early", False)), None)
        if stopper is not None:
            # The run had stopped early: ignite would otherwise train on to max_epochs.
            engine.state.stopped_early = True
            engine.terminate()
            logger.info("Resumed %s: that run had stopped early at step %d; nothing left to train (resume=False starts over).",
                        self.resumed_from, engine.state.iteration)
        elif steps is not None and engine.state.iteration >= steps:
            logger.info("Resumed %s: all %d steps were done; nothing left to train (resume=False starts over).",
                        self.resumed_from, steps)
        else:
            logger.info("Resumed %s at step %d of %s (epoch %d).", self.resumed_from, engine.state.iteration, steps, engine.state.epoch)

    def save(self, engine: Engine) -> str | None:
        """Write checkpoint_{step}.pt atomically on rank 0 and remove older ones -> its path (None off rank 0)."""
        if not is_rank0():
            return None
        step = engine.state.iteration
        state = {k: v.state_dict() for k, v in self._load_dict().items()}
        path = atomic_torch_save(state, os.path.join(self.ckpt_dir, f"{PREFIX}_{step}.pt"))
        # Older checkpoints go only after the new one is complete on disk (kill-safe).
        for old in glob.glob(os.path.join(self.ckpt_dir, f"{PREFIX}_*.pt")):
            if os.path.abspath(old) != os.path.abspath(path):
                os.remove(old)
        return path
