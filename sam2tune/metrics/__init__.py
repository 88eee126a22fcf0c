"""Metrics beyond MONAI's: calibration (ECE) and uncertainty AUROC."""

from sam2tune.metrics.calibration import binary_entropy, expected_calibration_error, pixel_errors, uncertainty_auroc
from sam2tune.metrics.factory import BiomarkerMetric, build_biomarker_metric

__all__ = ["BiomarkerMetric", "build_biomarker_metric", "binary_entropy", "expected_calibration_error", "pixel_errors", "uncertainty_auroc"]
