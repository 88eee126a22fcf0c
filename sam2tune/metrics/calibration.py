"""Calibration and uncertainty quality for binary segmentation: expected calibration error and uncertainty AUROC.

ECE follows Guo et al. (2017) for the predicted label: each pixel's confidence is max(p, 1 - p), it is correct when
(p >= threshold) equals the label; ECE = sum over equal-width confidence bins (lo, hi] of (n_bin / N) *
|accuracy_bin - mean confidence_bin|. Uncertainty AUROC is the probability that a wrongly classified pixel has a
higher uncertainty than a correctly classified one (ties count one half): 1 = perfect ranking, 0.5 = chance.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.metrics import compute_roc_auc


def _flat(x: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    """Any-shaped tensor or array -> float64 1D array; ValueError on NaN."""
    arr = (x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)).astype(np.float64).ravel()
    if np.isnan(arr).any():
        raise ValueError(f"{name} holds NaN values: calibration metrics need finite probabilities and labels.")
    return arr


def expected_calibration_error(
    prob: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray, n_bins: int = 15, threshold: float = 0.5
) -> float:
    """Foreground probabilities and binary labels (same shape, any) -> ECE in [0, 1] (NaN if empty)."""
    p, y = _flat(prob, "prob"), _flat(target, "target") > 0.5
    if p.shape != y.shape:
        raise ValueError(f"prob and target differ in size: {p.size} vs {y.size}.")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}.")
    if p.size == 0:
        return math.nan
    if p.min() < 0 or p.max() > 1:
        raise ValueError(
            f"prob must lie in [0, 1] (apply a sigmoid to logits first), got [{p.min():.3g}, {p.max():.3g}]."
        )
    pred = p >= threshold
    conf = np.where(pred, p, 1.0 - p)
    correct = (pred == y).astype(np.float64)
    # Bins (lo, hi]: bin index = number of inner edges strictly below the confidence.
    bins = np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], conf, side="left")
    acc = np.bincount(bins, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    return float(np.abs(acc - conf_sum).sum() / p.size)  # sum_b n_b/N |acc_b/n_b - conf_b/n_b|


def pixel_errors(prob: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray,
                 threshold: float = 0.5) -> np.ndarray:
    """Probabilities and labels -> flat 0/1 array, 1 where the thresholded prediction is wrong."""
    return ((_flat(prob, "prob") >= threshold) != (_flat(target, "target") > 0.5)).astype(np.int8)


def uncertainty_auroc(uncertainty: torch.Tensor | np.ndarray, errors: torch.Tensor | np.ndarray) -> float:
    """Per-pixel uncertainty and 0/1 error map (same size) -> AUROC of the uncertainty for finding the errors.

    A thin wrapper over MONAI's ``compute_roc_auc`` (ties count one half there too): this one flattens any shape,
    refuses NaN and size mismatches, and returns NaN without MONAI's warning when there is nothing to rank.
    MONAI's loop is about 1 s per million pixels (4x a rank-based Mann-Whitney U), fine for the pooled pixels of
    an evaluation set.

    Args:
        uncertainty: per-pixel uncertainty, any shape (higher = less sure).
        errors: per-pixel 0/1 map, 1 where the prediction is wrong (see `pixel_errors`), same size.

    Returns:
        AUROC in [0, 1]; NaN when there is no wrong pixel or no right pixel.
    """
    u, e = _flat(uncertainty, "uncertainty"), _flat(errors, "errors") > 0.5
    if u.shape != e.shape:
        raise ValueError(f"uncertainty and errors differ in size: {u.size} vs {e.size}.")
    n_pos = int(e.sum())
    if n_pos == 0 or n_pos == e.size:
        return math.nan
    return float(compute_roc_auc(torch.from_numpy(u), torch.from_numpy(e.astype(np.float64))))


def binary_entropy(prob: torch.Tensor) -> torch.Tensor:
    """Probabilities (any shape) -> predictive entropy in bits, same shape, in [0, 1] (1 at p = 0.5)."""
    p = prob.clamp(1e-7, 1 - 1e-7)
    return -(p * torch.log2(p) + (1 - p) * torch.log2(1 - p))
