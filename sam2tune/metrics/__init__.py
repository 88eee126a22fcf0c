"""Metrics beyond MONAI's: calibration (ECE) and uncertainty AUROC, knee biomarkers (factory, label-free measure)."""

from sam2tune.metrics.calibration import binary_entropy, expected_calibration_error, pixel_errors, uncertainty_auroc
from sam2tune.metrics.factory import BiomarkerMetric, build_biomarker_metric, measure_prediction
from sam2tune.metrics.summary import score_summary

__all__ = [
    "BiomarkerMetric",
    "binary_entropy",
    "build_biomarker_metric",
    "expected_calibration_error",
    "measure_prediction",
    "pixel_errors",
    "score_summary",
    "uncertainty_auroc",
]
