"""Encoder warm-up: the image encoder stays frozen for the first epochs, then trains (at its own, lower LR)."""

from __future__ import annotations

import logging

from ignite.engine import Engine, Events
from torch import nn

from sam2tune.finetune.freeze import component_of
from sam2tune.utils.dist import unwrap

logger = logging.getLogger(__name__)


def _in_encoder(name: str) -> bool:
    """True for parameters of the image encoder, including LoRA / adapter weights inside it."""
    return component_of(name) == "image_encoder" or "image_encoder." in name


class EncoderWarmup:
    """Freeze the trainable image-encoder parameters for epochs 1..warmup_epochs, unfreeze them from then on.

    The optimizer's "image_encoder" group (from `sam2tune.finetune.param_groups`, lr = decoder lr x encoder_lr_mult)
    exists from the start; frozen parameters get no gradient, so AdamW leaves them (and their decay) alone.
    LoRA / adapter weights inside the encoder are frozen alike. Resume-safe: the state follows the engine's epoch.
    Parameters a strategy froze (e.g. LoRA's base weights) stay frozen.

    Args:
        network: the SAM2Segmenter (or its DDP wrapper), after apply_finetune.
        warmup_epochs: epochs with a frozen encoder (0 = never frozen).
    """

    def __init__(self, network: nn.Module, warmup_epochs: int) -> None:
        if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be an integer >= 0, got {warmup_epochs!r}.")
        self.warmup_epochs = warmup_epochs
        # Everything trainable inside the encoder: its own weights, and LoRA / adapter weights placed in it.
        self.params = [p for n, p in unwrap(network).named_parameters() if p.requires_grad and _in_encoder(n)]
        self.encoder_trainable = True

    @property
    def unfreeze_epoch(self) -> int:
        """First epoch (1-based) in which the encoder trains."""
        return self.warmup_epochs + 1

    def __call__(self, engine: Engine | None = None) -> bool:
        """Whether the encoder trains in the current epoch (TrainingHistory `extra` calls this each epoch)."""
        return self.encoder_trainable

    def attach(self, engine: Engine) -> None:
        """Set the encoder's state at the start of every epoch."""
        engine.add_event_handler(Events.EPOCH_STARTED, self.update)

    def update(self, engine: Engine) -> None:
        """Freeze or unfreeze for engine.state.epoch (ignite makes it 1-based at EPOCH_STARTED)."""
        trainable = engine.state.epoch > self.warmup_epochs
        if trainable != self.encoder_trainable or engine.state.epoch == 1:
            for p in self.params:
                p.requires_grad_(trainable)
            if self.params:
                logger.info("epoch %d: image encoder %s (%d tensors)", engine.state.epoch,
                            "unfrozen" if trainable else "frozen for warm-up", len(self.params))
        self.encoder_trainable = trainable
