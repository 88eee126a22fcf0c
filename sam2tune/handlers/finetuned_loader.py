"""Load a fine-tuned model.pt into a bundle's network: an ignite handler, or called directly where no engine runs.

The model-zoo way: ``network_def`` builds the network plainly (no weights file needed, so ``verify_net_in_out`` and
the zoo's fake-weight step work before ``models/model.pt`` exists) and a handler loads the weights when the engine
starts. Unlike MONAI's ``CheckpointLoader`` it needs no engine (``load()``: the 3D and label-free inference paths run
without one), reads with ``torch.load(weights_only=True)`` and loads strictly through
``sam2tune.networks.load_finetuned_state_dict`` (every key and shape must match; adapters / prompt tokens the file
carries are added first), and a missing file names the fix.
"""

from __future__ import annotations

import logging
import os

from ignite.engine import Engine, Events
from torch import nn

from sam2tune.networks import SAM2Segmenter, load_finetuned_state_dict
from sam2tune.networks.build import read_state_dict

logger = logging.getLogger(__name__)


class FinetunedCheckpointLoader:
    """Load ``load_path`` (a sam2tune model.pt) into ``network`` strictly, once per call.

    Args:
        load_path: the fine-tuned ``model.pt`` (default in bundles: ``<ckpt_dir>/model.pt``).
        network: a ``SAM2Segmenter``, or a wrapper holding one as ``.segmenter`` (``BoxPromptedSegmenter``).

    Raises:
        TypeError: `network` is not (and does not wrap) a SAM2Segmenter.
    """

    def __init__(self, load_path: str | os.PathLike, network: nn.Module) -> None:
        if isinstance(load_path, str) and load_path[:1] in ("$", "@", "%"):
            raise ValueError(f"load_path {load_path!r}: values starting with $, @ or % are refused.")
        self.load_path = str(load_path)
        self.network = network
        self.segmenter = _segmenter_of(network)

    def attach(self, engine: Engine) -> None:
        """Load the weights when `engine` starts (before the first iteration).

        Args:
            engine: the evaluator (or trainer) running the network.
        """
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        """Ignite event callback: load the weights.

        Args:
            engine: the engine that fired the event (unused).
        """
        self.load()

    def load(self) -> nn.Module:
        """Read ``load_path`` (weights_only) and load it strictly; the network keeps its device.

        Returns:
            The network given at construction, weights loaded.

        Raises:
            FileNotFoundError: no file at ``load_path`` (the message says how to get one).
            sam2tune.networks.CheckpointMismatchError: the file does not fit the network (keys, shapes, cause).
        """
        if not os.path.isfile(self.load_path):
            raise FileNotFoundError(
                f"Fine-tuned weights not found: {self.load_path}. Train the bundle first (`run training` writes "
                f"<ckpt_dir>/model.pt), or pass --ckpt_dir DIR for a folder holding model.pt."
            )
        param = next(self.segmenter.parameters(), None)
        load_finetuned_state_dict(self.segmenter, read_state_dict(self.load_path), source=self.load_path)
        if param is not None:
            self.segmenter.to(param.device)  # adapters / prompt tokens the file added are created on the CPU
        logger.info("Loaded fine-tuned weights %s", self.load_path)
        return self.network


def _segmenter_of(network: nn.Module) -> SAM2Segmenter:
    for candidate in (network, getattr(network, "segmenter", None)):
        if isinstance(candidate, SAM2Segmenter):
            return candidate
    raise TypeError(
        f"FinetunedCheckpointLoader needs a SAM2Segmenter (or a wrapper with .segmenter), got {type(network).__name__}."
    )
