"""Metrics beyond MONAI's: calibration (ECE) and uncertainty AUROC."""

from sam2tune.metrics.calibration import binary_entropy, expected_calibration_error, pixel_errors, uncertainty_auroc

__all__ = ["binary_entropy", "expected_calibration_error", "pixel_errors", "uncertainty_auroc"]
