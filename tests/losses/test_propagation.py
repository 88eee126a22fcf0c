"""PropagationLoss: best-candidate Dice + BCE on present slices, object-score BCE everywhere, IoU-head L1, rounds."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sam2tune.losses import PropagationLoss


def _target():
    target = torch.zeros(2, 4, 8, 8)
    target[0, :3, 2:6, 2:6] = 1  # object 0: present on slices 0-2, absent on 3
    target[1, 1:, 0:4, 4:8] = 1  # object 1: absent on slice 0
    return target


def _scores(target, value=20.0):
    return torch.where(target.flatten(2).amax(-1) > 0, value, -value)  # object-score logits that are right


def test_a_perfect_candidate_among_wrong_ones_costs_almost_nothing():
    """min over candidates: one perfect candidate per slice makes the mask term vanish, whatever the others are."""
    target = _target()
    perfect = target * 40 - 20
    wrong = -perfect
    cands = torch.stack([wrong, perfect, wrong], 2)  # (O, T, K, H, W), the perfect one in the middle
    pred = {"logits": wrong, "object_scores": _scores(target), "candidates": cands}
    assert float(PropagationLoss()(pred, target)) < 1e-3
    # without candidates only the chosen (wrong) mask is trained: Dice + BCE of a fully wrong mask
    chosen = PropagationLoss()({"logits": wrong, "object_scores": _scores(target)}, target)
    assert float(chosen) > 10


def test_absent_slices_count_only_through_the_object_score():
    target = _target()
    logits = target * 40 - 20
    logits[0, 3] = 20.0  # a full mask where object 0 is absent: no mask loss there, only the object score counts
    right = PropagationLoss()({"logits": logits, "object_scores": _scores(target)}, target)
    assert float(right) < 1e-3
    scores = _scores(target)
    scores[0, 3] = 20.0  # the head says "present" on the absent slice: BCE of one wrong slice out of 8
    wrong = PropagationLoss(dice_weight=0, bce_weight=0)({"logits": logits, "object_scores": scores}, target)
    assert float(wrong) == pytest.approx(20.0 / 8, rel=1e-3)
    nothing = torch.zeros_like(target)  # no object anywhere: the object term alone
    only_object = PropagationLoss(object_weight=2.0)({"logits": logits, "object_scores": _scores(target)}, nothing)
    expected = 2.0 * F.binary_cross_entropy_with_logits(_scores(target), torch.zeros(2, 4))
    assert torch.isclose(only_object, expected)


def test_iou_head_is_trained_towards_the_actual_iou():
    target = _target()
    perfect = target * 40 - 20
    cands = torch.stack([perfect, perfect, perfect], 2)
    pred = {"logits": perfect, "object_scores": _scores(target), "candidates": cands}
    exact = PropagationLoss()({**pred, "ious": torch.ones(2, 4, 3)}, target)
    off = PropagationLoss()({**pred, "ious": torch.full((2, 4, 3), 0.25)}, target)
    assert float(off - exact) == pytest.approx(0.75, rel=1e-3)  # L1 against actual IoU 1 on every present slice
    assert torch.isclose(PropagationLoss(iou_weight=0.0)({**pred, "ious": torch.zeros(2, 4, 3)}, target), exact)


def test_rounds_are_averaged_and_removed_options_are_refused():
    target = _target()
    good = {"logits": target * 40 - 20, "object_scores": _scores(target)}
    bad = {"logits": -(target * 40 - 20), "object_scores": _scores(target)}
    loss = PropagationLoss()
    assert torch.isclose(loss({"rounds": [good, bad]}, target), (loss(good, target) + loss(bad, target)) / 2)
    for removed in ("object_balance", "window_dice"):  # tried, no gain, removed
        with pytest.raises(TypeError, match=removed):
            PropagationLoss(**{removed: True})
