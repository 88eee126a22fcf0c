"""Step-named LoRA outputs: best adapter + merged model, latest and final adapters, and training_summary.json.

Files in `ckpt_dir` (only one of each best/latest/final kind is kept; older ones are removed when replaced):

- ``best_lora_step{step}_iou{iou:.4f}_dice{dice:.4f}/``     adapter folder (save_adapter) of the best validation
- ``best_merged_step{step}_iou{iou:.4f}_dice{dice:.4f}.pt`` full state_dict, LoRA merged (save_merged)
- ``latest_lora_step{step}/``                             adapter after the latest validation
- ``final_lora_step{steps}/``                             adapter when training ends (early stop included)
- ``model.pt`` + ``adapter/``                             the contract's deployable pair, = the best so far

and `<output_dir>/training_summary.json`. Strategies without adapter weights (full, decoder_only) get the merged
files only; the `_lora_` names then hold nothing and are skipped. state_dict()/load_state_dict() let
ResumableCheckpoint resume a run: the summary then covers every validation and second since the first start.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import time

import torch
from ignite.engine import Engine, Events
from torch import nn

from sam2tune.finetune.config import PARAMETER_EFFICIENT
from sam2tune.handlers.step_validation import StepValidationEvents, register_step_events
from sam2tune.utils.atomic import atomic_write_json
from sam2tune.utils.dist import is_rank0, unwrap

logger = logging.getLogger(__name__)


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)


class StepOutputs:
    """Write the step-named outputs above on each StepValidation result and at the end of training.

    Args:
        ckpt_dir: folder for adapters and models.
        output_dir: folder for training_summary.json.
        network: the trained network (DDP-wrapped is fine).
        iou_metric / dice_metric: validator metric names used in the file names and summary.
        extra: JSON-able settings copied into the summary (e.g. variant, lora rank, lr).
    """

    def __init__(self, ckpt_dir: str, output_dir: str, network: nn.Module, iou_metric: str = "val_mean_iou",
                 dice_metric: str = "val_mean_dice", extra: dict | None = None) -> None:
        self.ckpt_dir, self.output_dir, self.network = str(ckpt_dir), str(output_dir), network
        self.iou_metric, self.dice_metric, self.extra = iou_metric, dice_metric, dict(extra or {})
        self.best: dict | None = None
        self.paths: dict[str, str] = {}
        self.validations: list[dict] = []
        self.resumed_from: list[int] = []  # steps this run was resumed from (ResumableCheckpoint), oldest first
        self._seconds_before = 0.0  # training seconds of the runs before a resume
        self._t0 = 0.0
        self._engine: Engine | None = None

    def attach(self, engine: Engine) -> None:
        """Listen to step validations; write final adapter + summary at COMPLETED."""
        register_step_events(engine)
        self._engine = engine
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(StepValidationEvents.VALIDATION_COMPLETED, self._on_validation)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    # ---- resume (ResumableCheckpoint saves and restores this) -------------------------------------------------------
    def state_dict(self) -> dict:
        """Best so far, validations, file names kept, seconds trained and the step of this state (for resume)."""
        return {"step": self._engine.state.iteration if self._engine is not None else 0, "best": self.best,
                "validations": list(self.validations), "paths": dict(self.paths),
                "resumed_from": list(self.resumed_from), "seconds": self._seconds()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a state_dict(): the next validations and the summary extend it."""
        self.best, self.validations, self.paths = state["best"], list(state["validations"]), dict(state["paths"])
        self.resumed_from = [*state["resumed_from"], int(state["step"])]
        self._seconds_before = float(state["seconds"])

    def _seconds(self) -> float:
        return self._seconds_before + (time.perf_counter() - self._t0 if self._t0 else 0.0)

    # ---- events ------------------------------------------------------------------------------------------------------
    def _started(self, engine: Engine) -> None:
        self._t0 = time.perf_counter()

    def _on_validation(self, engine: Engine) -> None:
        result = engine.state.step_validation
        step, metrics = result["step"], result["metrics"]
        iou, dice = metrics.get(self.iou_metric, float("nan")), metrics.get(self.dice_metric, float("nan"))
        self.validations.append({"step": step, "iou": iou, "dice": dice})
        if not is_rank0():
            return
        self._replace("latest_lora", self._save_adapter(f"latest_lora_step{step}"))
        if result["is_best"]:
            self.best = {"step": step, "iou": iou, "dice": dice}
            tag = f"step{step}_iou{iou:.4f}_dice{dice:.4f}"
            self._replace("best_lora", self._save_adapter(f"best_lora_{tag}"))
            self._replace("best_merged", self._save_merged(f"best_merged_{tag}.pt"))
            # The contract's model.pt / adapter/ follow the best model, as ModelExport does per epoch.
            self._save_merged("model.pt")
            self._save_adapter("adapter")

    def _completed(self, engine: Engine) -> None:
        if not is_rank0():
            return
        steps = engine.state.iteration
        self._replace("final_lora", self._save_adapter(f"final_lora_step{steps}"))
        if self.best is None:  # never validated (e.g. no validation data): still leave a deployable model
            self._save_merged("model.pt")
            self._save_adapter("adapter")
        summary = {
            "total_steps": steps,
            "epochs": engine.state.epoch,
            "stopped_early": bool(getattr(engine.state, "stopped_early", False)),
            "best_step": self.best["step"] if self.best else None,
            "best_val_iou": self.best["iou"] if self.best else None,
            "best_val_dice": self.best["dice"] if self.best else None,
            "validations": self.validations,
            "seconds": self._seconds(),  # summed over resumed runs
            "resumed_from_steps": self.resumed_from,
            "files": {k: os.path.basename(v) for k, v in self.paths.items() if v},
            "parameters": self._parameters(),
            # peak accelerator memory of this process (None on CPU, where the benchmark measures RSS instead)
            "peak_cuda_memory_bytes": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None,
            **self.extra,
        }
        atomic_write_json(summary, os.path.join(self.output_dir, "training_summary.json"))
        logger.info("Training summary: best val IoU %s at step %s of %d -> %s", summary["best_val_iou"],
                    summary["best_step"], steps, self.output_dir)

    # ---- writers -----------------------------------------------------------------------------------------------------
    def _net(self) -> nn.Module:
        return unwrap(self.network)

    def _is_parameter_efficient(self) -> bool:
        config = getattr(self._net(), "finetune_config", None)
        return config is not None and config.strategy in PARAMETER_EFFICIENT

    def _save_adapter(self, name: str) -> str | None:
        if not self._is_parameter_efficient():
            return None
        from sam2tune.finetune.io import save_adapter  # finetune sits above handlers' imports of networks

        return save_adapter(self._net(), os.path.join(self.ckpt_dir, name))

    def _save_merged(self, name: str) -> str:
        from sam2tune.finetune.io import save_merged

        return save_merged(self._net(), os.path.join(self.ckpt_dir, name))

    def _replace(self, kind: str, path: str | None) -> None:
        """Record `path` as the file of `kind`, removing the one it replaces (one best / one latest on disk)."""
        if path is None:
            return
        old = self.paths.get(kind)
        if old and os.path.abspath(old) != os.path.abspath(path):
            _remove(old)
        # Left over from an earlier run in the same ckpt_dir: keep only this run's file of each kind.
        pattern = {"best_lora": "best_lora_step*", "best_merged": "best_merged_step*.pt",
                   "latest_lora": "latest_lora_step*", "final_lora": "final_lora_step*"}[kind]
        for stale in glob.glob(os.path.join(self.ckpt_dir, pattern)):
            if os.path.abspath(stale) != os.path.abspath(path):
                _remove(stale)
        self.paths[kind] = path

    def _parameters(self) -> dict:
        net = self._net()
        total = sum(p.numel() for p in net.parameters())
        trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
        return {"total": total, "trainable": trainable, "trainable_fraction": trainable / max(total, 1)}
