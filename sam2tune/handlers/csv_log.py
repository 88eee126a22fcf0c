"""CSV logs of step-based training: train_log.csv (loss, IoU, LR, step time every K steps), val_log.csv (IoU, Dice)."""

from __future__ import annotations

import csv
import math
import os
import time

import torch
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents
from monai.handlers import from_engine
from monai.metrics import compute_iou

from sam2tune.handlers.step_validation import StepValidationEvents, register_step_events
from sam2tune.utils.dist import is_rank0

TRAIN_FIELDS = ("step", "epoch", "loss", "iou", "lr", "step_seconds")
VAL_FIELDS = ("step", "epoch", "iou", "dice")


def batch_iou(output: list | dict) -> float:
    """Mean IoU over a (decollated) engine output's binary `pred` / `label` items; NaN where every label is empty."""
    preds, labels = from_engine(["pred", "label"])(output)
    pred = torch.stack([torch.as_tensor(p).float() for p in preds])
    label = torch.stack([torch.as_tensor(y).float() for y in labels]).to(pred.device)
    iou = compute_iou(pred, label, include_background=True, ignore_empty=True)
    iou = iou[~torch.isnan(iou)]
    return float(iou.mean()) if iou.numel() else math.nan


class TrainingCSVLog:
    """Append one train row every `every` steps and one val row per StepValidation to CSVs in `output_dir`.

    A fresh run rewrites the files from scratch; a resumed run (ResumableCheckpoint) keeps the rows up to the step it
    resumed from and drops later ones (logged after that checkpoint, before the kill), so no step appears twice.
    This is decided at the first iteration, not at STARTED, so it does not depend on the order in which handlers
    load the checkpoint. Train IoU is measured on the post-processed (thresholded) predictions of that step's
    batch, so it needs the trainer's postprocessing to binarise `pred`.

    Args:
        output_dir: folder for train_log.csv and val_log.csv.
        optimizer: its largest param-group LR is logged (the LoRA group; the encoder group may be scaled down).
        every: log a train row every this many steps.
        iou_metric / dice_metric: validator metric names written to val_log.csv.
    """

    def __init__(self, output_dir: str, optimizer: torch.optim.Optimizer, every: int = 10,
                 iou_metric: str = "val_mean_iou", dice_metric: str = "val_mean_dice") -> None:
        if int(every) < 1:
            raise ValueError(f"every must be >= 1 steps, got {every} (config key: log_interval).")
        self.output_dir, self.optimizer, self.every = str(output_dir), optimizer, int(every)
        self.iou_metric, self.dice_metric = iou_metric, dice_metric
        self.train_path = os.path.join(self.output_dir, "train_log.csv")
        self.val_path = os.path.join(self.output_dir, "val_log.csv")
        self._t_start, self._step_seconds = 0.0, math.nan
        self._ready = False  # files set up (fresh or trimmed) in this process

    def attach(self, engine: Engine) -> None:
        """Set up the files at the first step, then log train rows every `every` steps and val rows per validation."""
        register_step_events(engine)
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_STARTED, self._first_step)
        # step_seconds: batch on device -> optimizer step done (MONAI's MODEL_COMPLETED), so validation and file
        # writing that run on ITERATION_COMPLETED are not counted as training speed.
        engine.add_event_handler(Events.ITERATION_STARTED, self._tick)
        done = (IterationEvents.MODEL_COMPLETED if IterationEvents.MODEL_COMPLETED in engine._allowed_events
                else Events.ITERATION_COMPLETED)
        engine.add_event_handler(done, self._tock)
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.every), self._train_row)
        engine.add_event_handler(StepValidationEvents.VALIDATION_COMPLETED, self._val_row)

    def _start(self, engine: Engine) -> None:
        self._ready = False

    def _first_step(self, engine: Engine) -> None:
        if not self._ready:
            # ignite has already counted this iteration: the run (re)starts after step iteration - 1
            self._setup_files(engine.state.iteration - 1)

    def _setup_files(self, done: int) -> None:
        """Keep the rows of steps <= `done` (0: header only) in both files, rewritten atomically (rank 0)."""
        self._ready = True
        if not is_rank0():
            return
        os.makedirs(self.output_dir, exist_ok=True)
        for path, fields in ((self.train_path, TRAIN_FIELDS), (self.val_path, VAL_FIELDS)):
            rows = []
            if done > 0 and os.path.isfile(path):
                with open(path, newline="") as f:
                    rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= done]
            tmp = f"{path}.tmp{os.getpid()}"
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)
            os.replace(tmp, path)

    def _tick(self, engine: Engine) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._t_start = time.perf_counter()

    def _tock(self, engine: Engine) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._step_seconds = time.perf_counter() - self._t_start

    def _append(self, path: str, row: list) -> None:
        with open(path, "a", newline="") as f:
            csv.writer(f).writerow(row)

    def _train_row(self, engine: Engine) -> None:
        if not is_rank0():
            return
        loss = from_engine(["loss"], first=True)(engine.state.output)
        lr = max(group["lr"] for group in self.optimizer.param_groups)
        self._append(self.train_path, [engine.state.iteration, engine.state.epoch, f"{float(loss):.6f}",
                                       f"{batch_iou(engine.state.output):.6f}", f"{lr:.6g}",
                                       f"{self._step_seconds:.4f}"])

    def _val_row(self, engine: Engine) -> None:
        if not self._ready:  # a validation with no step trained in this process (resumed at the last step)
            self._setup_files(engine.state.iteration)
        if not is_rank0():
            return
        result = engine.state.step_validation
        m = result["metrics"]
        self._append(self.val_path, [result["step"], result["epoch"], f"{m.get(self.iou_metric, math.nan):.6f}",
                                     f"{m.get(self.dice_metric, math.nan):.6f}"])
