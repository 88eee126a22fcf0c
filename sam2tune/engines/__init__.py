"""Engines: MONAI SupervisedTrainer / Evaluator are used as they are; this package adds what they are given.

That is the prompt-aware batch preparation (``PromptPrepareBatch``, ``SliceWindowPrepareBatch``,
``VolumePromptPrepareBatch``) and the inferers: 2D prompts and corrective clicks (``InteractiveInferer``,
``ClickProtocolInferer``), slice stacks (``SliceStackInferer``), 3D slice windows and whole-volume propagation
(``SliceWindowInferer``, ``VolumeInferer``, ``VolumeClickProtocolInferer``).
"""

from sam2tune.engines.interactive import ClickProtocolInferer, InteractiveInferer
from sam2tune.engines.prepare_batch import PROMPT_KEYS, PromptPrepareBatch
from sam2tune.engines.slice_stack import SliceStackInferer
from sam2tune.engines.volume_batch import SliceWindowPrepareBatch, VolumePromptPrepareBatch
from sam2tune.engines.volume_clicks import VolumeClickProtocolInferer
from sam2tune.engines.volume_inferers import SliceWindowInferer, VolumeInferer

__all__ = [
    "PROMPT_KEYS",
    "ClickProtocolInferer",
    "InteractiveInferer",
    "PromptPrepareBatch",
    "SliceStackInferer",
    "SliceWindowInferer",
    "SliceWindowPrepareBatch",
    "VolumeClickProtocolInferer",
    "VolumeInferer",
    "VolumePromptPrepareBatch",
]
