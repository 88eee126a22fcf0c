"""Engines: MONAI SupervisedTrainer/Evaluator are used as they are; this package adds the prompt-aware batch prep."""

from sam2tune.engines.interactive import ClickProtocolInferer, InteractiveInferer
from sam2tune.engines.prepare_batch import PROMPT_KEYS, PromptPrepareBatch

__all__ = ["ClickProtocolInferer", "InteractiveInferer", "PROMPT_KEYS", "PromptPrepareBatch"]
