"""Export the deployable model.pt (LoRA merged) and, for parameter-efficient strategies, the small adapter folder."""

from __future__ import annotations

import logging
import os

from ignite.engine import Engine, Events
from torch import nn

from sam2tune.finetune.config import PARAMETER_EFFICIENT
from sam2tune.utils.atomic import atomic_torch_save
from sam2tune.utils.dist import is_rank0, unwrap

logger = logging.getLogger(__name__)


class ModelExport:
    """Write `<ckpt_dir>/model.pt` (plain SAM2Segmenter state_dict) when validation improves, and at the end if none.

    With finetune lora/adapter/prompt, `<ckpt_dir>/adapter/` gets the adapter-only weights and their config.
    """

    def __init__(self, ckpt_dir: str, network: nn.Module, validator: Engine | None = None,
                 filename: str = "model.pt") -> None:
        self.ckpt_dir, self.network, self.validator, self.filename = str(ckpt_dir), network, validator, filename
        self._exported_epoch: int | None = None

    def attach(self, engine: Engine) -> None:
        """Export after each epoch's validation when it is the best so far, and once at the end of training."""
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._on_epoch)
        engine.add_event_handler(Events.COMPLETED, self._on_completed)

    def _on_epoch(self, engine: Engine) -> None:
        v = self.validator
        if v is not None and v.state.epoch == engine.state.epoch and v.state.best_metric_epoch == engine.state.epoch:
            self.export(tag=f"best {v.state.best_metric:.4f} at epoch {engine.state.epoch}")
            self._exported_epoch = engine.state.epoch

    def _on_completed(self, engine: Engine) -> None:
        if self._exported_epoch is None and not os.path.exists(os.path.join(self.ckpt_dir, self.filename)):
            self.export(tag=f"final, epoch {engine.state.epoch} (no validation improvement recorded)")

    def export(self, tag: str = "") -> str | None:
        """Write model.pt (and adapter/) now; returns the model path (None off rank 0)."""
        if not is_rank0():
            return None
        from sam2tune.finetune.io import merged_state_dict, save_adapter  # finetune sits above networks

        net = unwrap(self.network)
        path = atomic_torch_save(merged_state_dict(net), os.path.join(self.ckpt_dir, self.filename))
        config = getattr(net, "finetune_config", None)
        if config is not None and config.strategy in PARAMETER_EFFICIENT:
            save_adapter(net, os.path.join(self.ckpt_dir, "adapter"))
        logger.info("Exported %s (%s)", path, tag)
        return path
