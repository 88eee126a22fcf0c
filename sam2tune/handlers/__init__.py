"""Ignite handlers for sam2tune workflows (attach to MONAI SupervisedTrainer / SupervisedEvaluator)."""

from sam2tune.handlers.checkpoint import ResumableCheckpoint, ValidatorBest, latest_checkpoint
from sam2tune.handlers.click_report import ClickProtocolReport
from sam2tune.handlers.early_stop import EarlyStopOnMetric
from sam2tune.handlers.eval_report import SegmentationReport
from sam2tune.handlers.grad_clip import GradientClipping
from sam2tune.handlers.history import TrainingHistory
from sam2tune.handlers.model_export import ModelExport

__all__ = [
    "ClickProtocolReport",
    "EarlyStopOnMetric",
    "GradientClipping",
    "ModelExport",
    "ResumableCheckpoint",
    "SegmentationReport",
    "TrainingHistory",
    "ValidatorBest",
    "latest_checkpoint",
]
