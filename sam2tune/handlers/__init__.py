"""Ignite handlers for sam2tune workflows (attach to MONAI SupervisedTrainer / SupervisedEvaluator)."""

from sam2tune.handlers.biomarker_report import KneeBiomarkerReport
from sam2tune.handlers.checkpoint import ResumableCheckpoint, ValidatorBest, latest_checkpoint
from sam2tune.handlers.click_report import ClickProtocolReport
from sam2tune.handlers.csv_log import TrainingCSVLog
from sam2tune.handlers.early_stop import EarlyStopOnMetric
from sam2tune.handlers.encoder_warmup import EncoderWarmup
from sam2tune.handlers.eval_report import SegmentationReport
from sam2tune.handlers.finetuned_loader import FinetunedCheckpointLoader
from sam2tune.handlers.grad_allreduce import GradientAllReduce
from sam2tune.handlers.grad_clip import GradientClipping
from sam2tune.handlers.history import TrainingHistory
from sam2tune.handlers.model_export import ModelExport
from sam2tune.handlers.nodule_report import NoduleUncertaintyReport
from sam2tune.handlers.step_outputs import StepOutputs
from sam2tune.handlers.step_validation import StepValidation, StepValidationEvents
from sam2tune.handlers.volume_report import VolumeReport

__all__ = [
    "ClickProtocolReport",
    "EarlyStopOnMetric",
    "EncoderWarmup",
    "FinetunedCheckpointLoader",
    "GradientAllReduce",
    "GradientClipping",
    "KneeBiomarkerReport",
    "ModelExport",
    "NoduleUncertaintyReport",
    "ResumableCheckpoint",
    "SegmentationReport",
    "StepOutputs",
    "StepValidation",
    "StepValidationEvents",
    "TrainingCSVLog",
    "TrainingHistory",
    "ValidatorBest",
    "VolumeReport",
    "latest_checkpoint",
]
