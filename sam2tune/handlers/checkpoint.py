"""One resumable checkpoint for every bundle: everything a run needs to go on as if it had never been killed.

`ResumableCheckpoint` writes `<ckpt_dir>/checkpoint_<iteration>.pt` every `every` epochs or steps (`unit`) and at
the end, atomically (temporary file + rename, rank 0 only), and on start loads the newest one back. A checkpoint
holds:

- every object of `save_dict` that has ``state_dict()`` / ``load_state_dict()``: network (saved unwrapped, no DDP
  ``module.`` prefix), optimizer, LR scheduler, and handler state (EarlyStopOnMetric, StepValidation, StepOutputs);
- ``trainer``: the trainer's own state (iteration, epoch, epoch length, max_epochs);
- ``rng``: the process-wide random generators and those owned by the trainer's dataset and prepare_batch
  (sam2tune.utils.rng_state), so a resumed run draws what the uninterrupted run would have;
- ``validator``: the validator's best metric and its epoch, so the first validation after a resume does not
  count as "best" (and overwrite model.pt) when it is worse than the best before the kill;
- ``progress``: whether the run had stopped early (a resumed early-stopped run trains no further).

Attach it last in the trainer's handler list (after validation, early stopping and model export): ignite runs an
event's handlers in attach order, so the checkpoint of epoch / step N already holds N's validation and its files.
Files are read with ``torch.load(weights_only=True)``: every entry is tensors, numbers, strings and containers.
"""

from __future__ import annotations

import glob
import logging
import os
import re

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from sam2tune.utils.atomic import atomic_torch_save
from sam2tune.utils.dist import is_rank0, unwrap
from sam2tune.utils.flags import as_bool
from sam2tune.utils.rng_state import RNGState

logger = logging.getLogger(__name__)
PREFIX = "checkpoint"
UNITS = ("epoch", "step")
RESERVED = ("trainer", "rng", "validator", "progress")


def latest_checkpoint(ckpt_dir: str) -> str | None:
    """Newest `checkpoint_<iteration>.pt` in `ckpt_dir`.

    Args:
        ckpt_dir: folder to look in.

    Returns:
        The path with the highest iteration, or None when there is none.
    """
    files = _checkpoints(ckpt_dir)
    return max(files, key=_iteration) if files else None


def _checkpoints(ckpt_dir: str) -> list[str]:
    return [f for f in glob.glob(os.path.join(ckpt_dir, f"{PREFIX}_*.pt")) if re.search(r"_(\d+)\.pt$", f)]


def _iteration(path: str) -> int:
    return int(re.findall(r"_(\d+)\.pt$", path)[0])


class ValidatorBest:
    """The best metric and its epoch of a MONAI evaluator (``state.best_metric`` / ``best_metric_epoch``) as a
    checkpoint entry. MONAI keeps them on the evaluator's state across ``run()`` calls but its state_dict does not
    hold them, so without this a resumed run starts again at best_metric = -1.

    Args:
        validator: the evaluator whose best metric is saved and restored.
    """

    def __init__(self, validator: Engine) -> None:
        self.validator = validator

    def state_dict(self) -> dict:
        """-> {"best_metric": float, "best_metric_epoch": int} (MONAI's initial values are -1, -1)."""
        state = self.validator.state
        return {"best_metric": float(getattr(state, "best_metric", -1)),
                "best_metric_epoch": int(getattr(state, "best_metric_epoch", -1))}

    def load_state_dict(self, state: dict) -> None:
        """Put a state_dict() back on the evaluator's state."""
        self.validator.state.best_metric = float(state["best_metric"])
        self.validator.state.best_metric_epoch = int(state["best_metric_epoch"])


class ResumableCheckpoint:
    """Save everything a run needs every `every` epochs or steps and at the end; resume from the newest on start.

    Args:
        ckpt_dir: folder of `checkpoint_<iteration>.pt` (the `n_saved` newest are kept).
        save_dict: name -> object with state_dict/load_state_dict (network, optimizer, lr_scheduler, handlers).
            The trainer, the random generators and the validator's best metric are added by this handler; the
            names trainer, rng, validator and progress are reserved.
        every: save every this many `unit`s (>= 1); a step-validated bundle uses its val_interval.
        unit: "epoch" or "step" (training iterations).
        n_saved: how many checkpoints to keep (>= 1); older ones are removed once the new one is complete on disk.
        resume: load the newest checkpoint of ckpt_dir when training starts. Strings are parsed with
            sam2tune.utils.as_bool (`--resume false` arrives from the bundle CLI as the string "false").
        validator: the evaluator whose best metric / epoch are saved (None: a run without epoch validation).

    Raises:
        ValueError: on a bad `every`, `unit`, `n_saved` or `resume`, or a reserved name in `save_dict`.
    """

    def __init__(self, ckpt_dir: str, save_dict: dict, every: int = 1, unit: str = "epoch", n_saved: int = 1,
                 resume: bool | str = True, validator: Engine | None = None) -> None:
        if isinstance(every, bool) or not str(every).strip().isdigit() or int(every) < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r} (config key: checkpoint_every).")
        unit = str(unit).strip().lower()
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {', '.join(UNITS)}, got {unit!r} (config key: checkpoint_unit).")
        if int(n_saved) < 1:
            raise ValueError(f"n_saved must be >= 1, got {n_saved!r}.")
        if reserved := sorted(set(save_dict or {}) & set(RESERVED)):
            raise ValueError(f"save_dict must not name {reserved}: this handler adds {', '.join(RESERVED)} itself.")
        self.ckpt_dir, self.save_dict = str(ckpt_dir), dict(save_dict or {})
        self.every, self.unit, self.n_saved = int(every), unit, int(n_saved)
        self.resume = as_bool(resume, "resume")
        self.validator = validator
        self.resumed_from: str | None = None
        self._objects: dict = {}
        self._last_saved: int | None = None
        self._written: list[str] = []  # checkpoints of this run, oldest first

    # ---- wiring ------------------------------------------------------------------------------------------------------
    def attach(self, engine: Engine) -> None:
        """Load at STARTED (resume on and a checkpoint present); save every `every` units and at COMPLETED (rank 0).

        Args:
            engine: the trainer.
        """
        dataset = getattr(getattr(engine, "data_loader", None), "dataset", None)
        self._objects = {**self.save_dict, "trainer": engine,
                         "rng": RNGState({"dataset": dataset, "prepare_batch": getattr(engine, "prepare_batch", None)})}
        if self.validator is not None:
            self._objects["validator"] = ValidatorBest(self.validator)
        if self.resume and (path := latest_checkpoint(self.ckpt_dir)):
            self.resumed_from = path
            engine.add_event_handler(Events.STARTED, self.load)
        event = Events.EPOCH_COMPLETED if self.unit == "epoch" else Events.ITERATION_COMPLETED
        engine.add_event_handler(event(every=self.every), self.save)
        engine.add_event_handler(Events.COMPLETED, self._final)

    def _loadable(self) -> dict:
        return {k: unwrap(v) if isinstance(v, torch.nn.Module) else v for k, v in self._objects.items()}

    # ---- load --------------------------------------------------------------------------------------------------------
    def load(self, engine: Engine) -> None:
        """Restore every entry from `self.resumed_from` (all ranks read the file).

        Args:
            engine: the trainer (its state becomes the checkpoint's, keeping this run's max_epochs).

        Raises:
            ValueError: when the checkpoint lacks the network / optimizer / trainer, or is past max_epochs.
        """
        path = self.resumed_from
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        objects = self._loadable()
        missing = sorted(set(objects) - set(checkpoint))
        required = [k for k in missing
                    if k == "trainer" or isinstance(objects[k], torch.nn.Module | torch.optim.Optimizer)]
        if required:
            raise ValueError(f"Checkpoint {path} lacks {required} (not a sam2tune training checkpoint of this "
                             f"bundle?); remove it or pass --resume false to start over.")
        if missing:
            # an older sam2tune wrote less: resume what is there, say what the resumed run does not have
            logger.warning("Checkpoint %s holds no %s (written by an older sam2tune): the resumed run restarts them "
                           "(rng: other random draws than an uninterrupted run; validator: best metric forgotten, "
                           "so the next validation replaces model.pt; early_stop: patience counted afresh).",
                           path, missing)
        max_epochs = engine.state.max_epochs  # this config's, which the trainer's state_dict would overwrite
        if checkpoint["trainer"].get("max_epochs") != max_epochs:
            # The scheduler's state (its total steps) comes from the checkpoint: steps past that total follow no
            # planned schedule (the cosine turns back up). Resume is for finishing a run, not lengthening it.
            logger.warning("Checkpoint %s was written with max_epochs=%s, this run has %s; the LR schedule keeps the "
                           "checkpoint's length. To train longer from scratch, pass --resume false.",
                           path, checkpoint["trainer"].get("max_epochs"), max_epochs)
        # ignite's load_objects: load_state_dict on each object (strict keys for networks)
        Checkpoint.load_objects(to_load={k: v for k, v in objects.items() if k in checkpoint}, checkpoint=checkpoint)
        if max_epochs is not None and engine.state.epoch > max_epochs:
            raise ValueError(f"Checkpoint {path} is at epoch {engine.state.epoch}, past max_epochs={max_epochs}; "
                             f"raise max_epochs or pass --resume false to start over.")
        engine.state.max_epochs = max_epochs
        self._last_saved = engine.state.iteration
        self._written = [path]
        self._report(engine, bool(checkpoint.get("progress", {}).get("stopped_early", False)))

    def _report(self, engine: Engine, stopped_early: bool) -> None:
        path = self.resumed_from
        if stopped_early or any(getattr(v, "stopped_early", False) for v in self.save_dict.values()):
            # The run had stopped early: ignite would otherwise train on to max_epochs.
            engine.state.stopped_early = True
            engine.terminate()
            logger.info("Resumed %s: that run had stopped early at epoch %d (step %d); nothing left to train "
                        "(--resume false starts over).", path, engine.state.epoch, engine.state.iteration)
            return
        steps = engine.state.epoch_length * engine.state.max_epochs if engine.state.epoch_length else None
        if steps is not None and engine.state.iteration >= steps:
            logger.info("Resumed %s: all %d steps were done; nothing left to train (--resume false starts over).",
                        path, steps)
        else:
            logger.info("Resumed %s at epoch %d, step %d of %s.", path, engine.state.epoch, engine.state.iteration,
                        steps)

    # ---- save --------------------------------------------------------------------------------------------------------
    def _final(self, engine: Engine) -> None:
        if self._last_saved != engine.state.iteration:
            self.save(engine)

    def save(self, engine: Engine) -> str | None:
        """Write checkpoint_<iteration>.pt atomically (rank 0) and remove all but the `n_saved` newest.

        Args:
            engine: the trainer.

        Returns:
            The path written (None off rank 0).
        """
        self._last_saved = engine.state.iteration
        if not is_rank0():
            return None
        state = {k: v.state_dict() for k, v in self._loadable().items()}
        stopped = bool(getattr(engine.state, "stopped_early", False)) or any(
            getattr(v, "stopped_early", False) for v in self.save_dict.values())
        state["progress"] = {"stopped_early": stopped, "unit": self.unit, "every": self.every}
        path = atomic_torch_save(state, os.path.join(self.ckpt_dir, f"{PREFIX}_{engine.state.iteration}.pt"))
        # Older checkpoints go only after the new one is complete on disk (kill-safe). Kept: the n_saved newest of
        # this run (the one resumed from counts); any other checkpoint_*.pt (e.g. of a run started over with
        # --resume false) is removed, so a later resume cannot pick up a stale one.
        self._written = [p for p in self._written if os.path.abspath(p) != os.path.abspath(path)] + [path]
        keep = {os.path.abspath(p) for p in self._written[-self.n_saved :]}
        for old in _checkpoints(self.ckpt_dir):
            if os.path.abspath(old) not in keep:
                os.remove(old)
        self._written = [p for p in self._written if os.path.abspath(p) in keep]
        return path


__all__ = ["PREFIX", "ResumableCheckpoint", "UNITS", "ValidatorBest", "latest_checkpoint"]
