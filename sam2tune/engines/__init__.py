"""Engines: MONAI SupervisedTrainer/Evaluator are used as they are; this package adds the prompt-aware batch prep."""

from sam2tune.engines.interactive import ClickProtocolInferer, InteractiveInferer
from sam2tune.engines.prepare_batch import PROMPT_KEYS, PromptPrepareBatch
from sam2tune.engines.volume_clicks import VolumeClickProtocolInferer

__all__ = ["ClickProtocolInferer", "InteractiveInferer", "PROMPT_KEYS", "PromptPrepareBatch", "VolumeClickProtocolInferer"]
