"""Resumable training checkpoints: atomic writes on rank 0 (ignite), resume from the latest (MONAI loader)."""

from __future__ import annotations

import glob
import logging
import os
import re

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from monai.handlers import CheckpointLoader

from sam2tune.utils.dist import is_rank0
from sam2tune.utils.rng_state import RNGState

logger = logging.getLogger(__name__)
PREFIX = "checkpoint"


def latest_checkpoint(ckpt_dir: str) -> str | None:
    """Newest `checkpoint_*.pt` in ckpt_dir by training iteration (None if there is none)."""
    files = glob.glob(os.path.join(ckpt_dir, f"{PREFIX}_*.pt"))
    steps = {f: re.findall(r"(\d+)\.pt$", f) for f in files}
    return max(files, key=lambda f: int(steps[f][0]) if steps[f] else -1) if files else None


class ResumableCheckpoint:
    """Save `save_dict` plus the trainer's own state every `every` epochs and resume from the latest on start.

    The trainer is added at attach time (as "trainer"), so a bundle config needs no trainer<->handler reference cycle,
    and so are the random generators (as "rng": global ones plus those of the trainer's dataset and prepare_batch),
    so a resumed run draws the windows, prompts and augmentations the uninterrupted run would have drawn (attach it
    after the validation handler, as the bundles do, so the saved state already includes what validation drew).

    MONAI's CheckpointSaver writes non-atomically; here ignite's DiskSaver(atomic=True) writes a temporary file
    and renames it, so a kill mid-write leaves the previous checkpoint intact. Loading goes through MONAI's
    CheckpointLoader (torch.load with weights_only=True).
    """

    def __init__(self, ckpt_dir: str, save_dict: dict, every: int = 1, n_saved: int = 1, resume: bool = True) -> None:
        self.ckpt_dir, self.save_dict, self.every, self.n_saved, self.resume = str(ckpt_dir), save_dict, every, n_saved, resume

    def attach(self, engine: Engine) -> None:
        """Attach saving (rank 0) and, when a checkpoint exists and resume is on, loading at start."""
        dataset = getattr(getattr(engine, "data_loader", None), "dataset", None)
        rng = RNGState({"dataset": dataset, "prepare_batch": getattr(engine, "prepare_batch", None)})
        self.save_dict = {**self.save_dict, "trainer": engine, "rng": rng}
        if self.resume and (path := latest_checkpoint(self.ckpt_dir)):
            logger.info("Resuming training from %s", path)
            load_dict = dict(self.save_dict)
            if "rng" not in torch.load(path, map_location="cpu", weights_only=True, mmap=True):  # mmap: keys only, no copy
                logger.warning("%s holds no random-generator state (written by an older sam2tune): the resumed run "
                               "draws other samples than an uninterrupted one would.", path)
                del load_dict["rng"]
            CheckpointLoader(load_path=path, load_dict=load_dict, map_location="cpu").attach(engine)
        if is_rank0():
            os.makedirs(self.ckpt_dir, exist_ok=True)
            saver = Checkpoint(
                self.save_dict,
                DiskSaver(self.ckpt_dir, require_empty=False, atomic=True),
                filename_prefix=PREFIX,
                n_saved=self.n_saved,
                global_step_transform=lambda e, _: e.state.iteration,
            )
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.every), saver)
