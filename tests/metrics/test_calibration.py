"""ECE and uncertainty AUROC against hand-computed cases (and the Mann-Whitney U statistic on random data)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu

from sam2tune.metrics import binary_entropy, expected_calibration_error, pixel_errors, uncertainty_auroc


def test_ece_hand_computed():
    # conf = max(p, 1-p) = [0.85, 0.85, 0.75, 0.65]; correct = [1, 0, 1, 1]; 10 bins.
    # bin (0.8, 0.9]: acc 0.5, conf 0.85 -> 2/4 * 0.35 = 0.175; bin (0.7, 0.8]: 1/4 * 0.25; bin (0.6, 0.7]: 1/4 * 0.35
    prob = torch.tensor([0.85, 0.85, 0.25, 0.65])
    label = torch.tensor([1, 0, 0, 1])
    assert expected_calibration_error(prob, label, n_bins=10) == pytest.approx(0.175 + 0.0625 + 0.0875)


def test_ece_single_bin_is_confidence_minus_accuracy():
    prob = np.array([[0.9, 0.9], [0.1, 0.1]])  # conf 0.9 everywhere, 3 of 4 right
    label = np.array([[1, 1], [0, 1]])
    assert expected_calibration_error(prob, label, n_bins=1) == pytest.approx(0.9 - 0.75)


def test_ece_perfectly_calibrated_is_zero():
    assert expected_calibration_error(np.ones(8), np.ones(8)) == pytest.approx(0.0)
    assert expected_calibration_error(np.zeros(8), np.zeros(8)) == pytest.approx(0.0)


def test_ece_rejects_logits_and_nan():
    with pytest.raises(ValueError, match="sigmoid"):
        expected_calibration_error(torch.tensor([2.0, -1.0]), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="NaN"):
        expected_calibration_error(torch.tensor([float("nan"), 0.5]), torch.tensor([1, 0]))


def test_uncertainty_auroc_hand_computed_with_tie():
    # error pixels have uncertainty 0.9 and 0.5, right pixels 0.1 and 0.5: pairs 1 + 1 + 1 + 0.5 (tie) -> 3.5 / 4
    assert uncertainty_auroc(np.array([0.9, 0.1, 0.5, 0.5]), np.array([1, 0, 1, 0])) == pytest.approx(0.875)


def test_uncertainty_auroc_perfect_inverse_and_undefined():
    assert uncertainty_auroc([0.9, 0.8, 0.1], [1, 1, 0]) == pytest.approx(1.0)
    assert uncertainty_auroc([0.1, 0.2, 0.9], [1, 1, 0]) == pytest.approx(0.0)
    assert math.isnan(uncertainty_auroc([0.1, 0.2], [0, 0]))  # nothing wrong: nothing to rank


def test_uncertainty_auroc_is_mann_whitney_u_on_any_shape():
    rng = np.random.default_rng(0)
    u = np.round(rng.random(400), 2)  # rounded: many ties
    e = (rng.random(400) < u).astype(int)
    expected = mannwhitneyu(u[e == 1], u[e == 0]).statistic / (e.sum() * (e.size - e.sum()))
    assert 0.6 < expected < 0.9  # errors are likelier where u is high: a ranking, not chance
    assert uncertainty_auroc(u, e) == pytest.approx(expected, abs=1e-12)
    assert uncertainty_auroc(torch.tensor(u).reshape(4, 10, 10), torch.tensor(e).reshape(4, 10, 10)) == pytest.approx(
        expected, abs=1e-12
    )


def test_uncertainty_auroc_undefined_is_nan_without_warning(recwarn):
    assert math.isnan(uncertainty_auroc([0.1, 0.2, 0.3], [1, 1, 1]))  # all wrong: nothing to rank either
    assert not recwarn.list  # MONAI's "y values can not be all ..." warning is not raised
    with pytest.raises(ValueError, match="differ in size"):
        uncertainty_auroc([0.1, 0.2], [1, 0, 1])


def test_pixel_errors_and_entropy():
    assert pixel_errors(torch.tensor([0.7, 0.2, 0.5]), torch.tensor([0, 0, 1])).tolist() == [1, 0, 0]
    h = binary_entropy(torch.tensor([0.5, 0.0, 1.0, 0.11]))
    assert h[0] == pytest.approx(1.0) and h[1] < 1e-5 and h[2] < 1e-5 and h[3] == pytest.approx(0.4999, abs=1e-3)
