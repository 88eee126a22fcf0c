"""Inter-slice consistency and the BCE + Dice + consistency loss on slice stacks."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss

from sam2tune.losses import InterSliceConsistencyLoss, SliceStackLoss, inter_slice_consistency


def test_consistency_hand_computed():
    p = torch.zeros(1, 3, 2, 2)
    p[:, 1] = 1.0  # slice 0 -> 1 changes by 1 everywhere, 1 -> 2 by -1: mean squared change 1
    assert float(inter_slice_consistency(p)) == pytest.approx(1.0)
    p[:, 1, 0, 0] = 0.0  # one of 4 pixels no longer changes in either pair
    assert float(inter_slice_consistency(p)) == pytest.approx(0.75)


def test_consistency_target_aware_ignores_true_changes():
    y = torch.zeros(2, 3, 4, 4)
    y[:, 1, 1:3, 1:3] = 1
    assert float(inter_slice_consistency(y.clone(), y)) == pytest.approx(0.0)
    assert float(inter_slice_consistency(y.clone())) > 0


def test_consistency_single_slice_is_zero_with_graph():
    x = torch.randn(2, 1, 4, 4, requires_grad=True)
    loss = InterSliceConsistencyLoss()(x)
    loss.backward()
    assert float(loss) == 0.0 and x.grad is not None


def test_slice_stack_loss_is_dicece_on_the_stack_volume_plus_consistency():
    torch.manual_seed(0)
    logits, label = torch.randn(2, 3, 8, 8), (torch.rand(2, 3, 8, 8) > 0.7).float()
    ref = DiceCELoss(sigmoid=True)(logits[:, None], label[:, None])
    assert float(SliceStackLoss(1, 1, 0)(logits, label)) == pytest.approx(float(ref), rel=1e-5)
    cons = float(inter_slice_consistency(torch.sigmoid(logits)))
    assert float(SliceStackLoss(1, 1, 0.5)(logits, label)) == pytest.approx(float(ref) + 0.5 * cons, rel=1e-5)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, label)
    assert float(SliceStackLoss(1, 0, 0)(logits, label)) == pytest.approx(float(bce), rel=1e-5)


def test_slice_stack_loss_bad_input():
    with pytest.raises(ValueError, match="both 0"):
        SliceStackLoss(0, 0, 1)
    with pytest.raises(ValueError, match="differ in shape"):
        SliceStackLoss()(torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 4))
