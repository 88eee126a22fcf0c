"""3D propagation with SAM2 memory: shapes, both directions, batched objects, training gradients, bad prompts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam2tune.finetune import apply_finetune
from sam2tune.networks import SAM2Segmenter
from sam2tune.networks.propagator import ObjectPrompt, encode_frames, logits_to_labels, propagate_volume, track_objects


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return SAM2Segmenter("tiny", 64, in_channels=1).eval()


def test_propagation_covers_both_directions_with_mixed_prompts(net):
    vol = torch.rand(10, 1, 48, 40)
    mask = np.zeros((48, 40), np.float32)
    mask[10:20, 10:20] = 1
    prompts = [
        [ObjectPrompt(5, box=[5, 5, 25, 25])],
        [ObjectPrompt(2, points=[[20, 20]]), ObjectPrompt(8, box=[4, 4, 20, 20])],
        [ObjectPrompt(7, mask=mask)],
    ]
    with torch.no_grad():
        logits, scores = propagate_volume(net, vol, prompts, chunk_size=4)
        _, forward_scores = propagate_volume(net, vol, prompts, directions="forward")
    assert logits.shape == (3, 10, 48, 40) and scores.shape == (3, 10)
    # every slice is reached from each key slice (below and above it)
    assert bool((scores > -1024).all())
    # forward only leaves the slices before each object's key slice unreached
    assert bool((forward_scores[0, :5] == -1024).all()) and bool((forward_scores[0, 5:] > -1024).all())
    # a mask prompt is its own output on the key slice (SAM2 uses the mask as the prediction there), up to the
    # low-res (image_size / 4) mask grid
    pred, truth = logits[2, 7] > 0, torch.from_numpy(mask > 0)
    assert float(2 * (pred & truth).sum() / (pred.sum() + truth.sum())) > 0.8
    labels = logits_to_labels(logits, [1, 6, 8])
    assert labels.shape == (10, 48, 40) and set(labels.unique().tolist()) <= {0, 1, 6, 8}


def test_window_tracking_trains_memory_modules():
    torch.manual_seed(0)
    net = apply_finetune(SAM2Segmenter("tiny", 64, in_channels=1), {"strategy": "lora", "train_memory": True}).train()
    frames = torch.rand(2 * 3, 1, 64, 64)
    table = torch.tensor([[0, 1, 2], [3, 4, 5], [0, 1, 2]])  # objects 0 and 2 in window 0, object 1 in window 1
    prompts = [ObjectPrompt(0, box=[8, 8, 30, 30]), ObjectPrompt(0, box=[20, 20, 40, 40]),
               ObjectPrompt(0, points=[[40, 40]])]
    masks, scores = track_objects(net, encode_frames(net, frames), table, prompts,
                                  {2: [ObjectPrompt(2, box=[8, 8, 30, 30]), None, None]}, high_res=True)
    assert masks.shape == (3, 3, 64, 64) and scores.shape == (3, 3)
    (masks.clamp(-20, 20).mean() + scores.mean()).backward()
    grads = {n: p.grad for n, p in net.named_parameters() if p.requires_grad}
    assert any(n.startswith("sam.memory_attention.") and g is not None and g.abs().sum() > 0 for n, g in grads.items())
    assert any(n.startswith("sam.memory_encoder.") and g is not None and g.abs().sum() > 0 for n, g in grads.items())
    assert any("lora_" in n and g is not None for n, g in grads.items())
    assert all(not p.requires_grad for n, p in net.named_parameters()
               if n.startswith("sam.image_encoder.") and "lora_" not in n)


def test_bad_prompts_are_named(net):
    vol = torch.rand(6, 1, 32, 32)
    with pytest.raises(ValueError, match="slice 6 is outside the volume \\(slices 0..5\\)"):
        propagate_volume(net, vol, [[ObjectPrompt(6, box=[1, 1, 9, 9])]])
    with pytest.raises(ValueError, match="no box, points or mask"):
        ObjectPrompt(2)
    with pytest.raises(ValueError, match="Empty volume"):
        propagate_volume(net, torch.rand(0, 1, 32, 32), [[ObjectPrompt(0, box=[1, 1, 9, 9])]])


def test_training_loss_supervises_every_candidate_and_the_iou_head():
    """Tracking frames give SAM2's 3 candidate masks + predicted IoUs; the loss trains the best one and the IoU head."""
    from sam2tune.losses import PropagationLoss

    torch.manual_seed(0)
    net = apply_finetune(SAM2Segmenter("tiny", 64, in_channels=1), {"strategy": "full", "train_memory": True}).train()
    frames = torch.rand(3, 1, 64, 64)
    table = torch.tensor([[0, 1, 2], [0, 1, 2]])
    prompts = [ObjectPrompt(0, box=[8, 8, 30, 30]), ObjectPrompt(0, box=[20, 20, 50, 50])]
    masks, scores, cands, ious = track_objects(net, encode_frames(net, frames), table, prompts, None, high_res=True,
                                               candidates=True)
    assert cands.shape == (2, 3, 3, 64, 64) and ious.shape == (2, 3, 3)
    # the box-prompted key slice has one mask (repeated for the loss); the chosen mask is one of the candidates
    assert torch.equal(cands[:, 0, 0], cands[:, 0, 2])
    assert all(any(torch.allclose(masks[o, 1], cands[o, 1, k]) for k in range(3)) for o in range(2))
    target = torch.zeros(2, 3, 64, 64)
    target[0, :, 8:30, 8:30] = 1
    target[1, :, 20:50, 20:50] = 1
    loss = PropagationLoss()({"logits": masks, "object_scores": scores, "candidates": cands, "ious": ious}, target)
    only_chosen = PropagationLoss(iou_weight=0.0)({"logits": masks, "object_scores": scores}, target)
    assert torch.isfinite(loss) and not torch.isclose(loss, only_chosen)
    loss.backward()
    head = net.sam.sam_mask_decoder.iou_prediction_head
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_fed_back_logits_change_the_answer_and_mixed_kinds_match_separate_runs(net):
    """Clicks + the previous low-res logits (SAM2VideoPredictor's prev_sam_mask_logits) differ from clicks alone,
    and a batch mixing prompt kinds, on the key slice and on later steps, gives each object what it gets alone."""
    torch.manual_seed(1)
    vol = torch.rand(6, 1, 32, 32)
    with torch.no_grad():
        _, _, low = propagate_volume(net, vol, [[ObjectPrompt(3, points=[[16, 16]])]], return_low_res=True)
        assert low.shape == (1, 6, 16, 16) and bool((low > -1024).all())
        clicks = {"points": [[16, 16], [5, 5]], "point_labels": [1, 0]}
        fed = ObjectPrompt(3, **clicks, mask_logits=low[0, 3] + 4.0)
        plain = ObjectPrompt(3, **clicks)
        box = ObjectPrompt(1, box=[4, 4, 20, 20])
        alone = [propagate_volume(net, vol, [[p]])[0][0] for p in (fed, plain, box)]
        assert float((alone[0] - alone[1]).abs().max()) > 1e-3  # the fed-back mask changes the answer
        mixed, _ = propagate_volume(net, vol, [[fed], [plain], [box]])
        for o in range(3):
            torch.testing.assert_close(mixed[o], alone[o], atol=2e-3, rtol=1e-3)
        # later steps: one object's correction carries fed-back logits, the other's does not
        frames = torch.rand(3, 1, 64, 64)
        feats = encode_frames(net, frames)
        table = torch.tensor([[0, 1, 2], [0, 1, 2]])
        init = [ObjectPrompt(0, box=[8, 8, 30, 30]), ObjectPrompt(0, box=[20, 20, 50, 50])]
        step = [ObjectPrompt(2, points=[[12, 12]], mask_logits=torch.randn(16, 16)), ObjectPrompt(2, points=[[30, 30]])]
        both, _ = track_objects(net, feats, table, init, {2: step})
        for o in range(2):
            one, _ = track_objects(net, feats, table[o : o + 1], [init[o]], {2: [step[o]]})
            torch.testing.assert_close(both[o], one[0], atol=2e-3, rtol=1e-3)
    with pytest.raises(ValueError, match="mask_logits go with clicks"):
        ObjectPrompt(2, box=[1, 1, 5, 5], mask_logits=torch.zeros(16, 16))
