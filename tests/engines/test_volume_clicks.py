"""The 3D click protocol: corrections go on the worst slice, which becomes the object's key; curves per object."""

import numpy as np
import pytest
import torch

from sam2tune.engines import (
    SliceWindowInferer,
    SliceWindowPrepareBatch,
    VolumeClickProtocolInferer,
    VolumePromptPrepareBatch,
)
from sam2tune.losses import PropagationLoss
from sam2tune.networks import SAM2Segmenter
from sam2tune.networks.propagator import ObjectPrompt
from sam2tune.prompts import add_click, click_as_key


def test_click_as_key_moves_the_key_and_keeps_earlier_clicks():
    prompts = [ObjectPrompt(4, box=[1, 1, 5, 5]), ObjectPrompt(6, points=[[2.0, 2.0]], point_labels=[1])]
    out = click_as_key(prompts, 6, np.array([3.0, 4.0]), 0.0)
    assert out[0].slice == 6 and out[0].points == [[2.0, 2.0], [3.0, 4.0]] and out[0].point_labels == [1, 0]
    assert [p.slice for p in out] == [6, 4]
    out = click_as_key(out, 4, np.array([2.0, 2.0]), 1.0)
    assert out[0].slice == 4 and out[0].box == [1, 1, 5, 5] and out[0].point_labels == [1]


def test_add_click_appends_and_keeps_or_drops_the_mask():
    """Training keeps a mask prompt's mask (SAM2 then ignores the clicks); the click protocol drops it so they count."""
    first = add_click(None, 3, np.array([5.0, 6.0]), 1.0)
    assert (first.slice, first.box, first.points, first.point_labels, first.mask) == (3, None, [[5.0, 6.0]], [1], None)
    mask = np.ones((4, 4), np.float32)
    masked = ObjectPrompt(2, box=[0, 0, 3, 3], mask=mask)
    kept, dropped = add_click(masked, 2, np.array([1, 2]), 0.0), click_as_key([masked], 2, np.array([1, 2]), 0.0)[0]
    assert kept.mask is mask and kept.points == [[1.0, 2.0]] and kept.point_labels == [0] and kept.box == [0, 0, 3, 3]
    assert dropped.mask is None and dropped.points == kept.points and dropped.box == [0, 0, 3, 3]
    assert masked.points is None, "the prompt given is not changed"


def test_protocol_records_one_curve_per_organ():
    torch.manual_seed(0)
    net = SAM2Segmenter("tiny", 64, in_channels=1).eval()
    label = torch.zeros(1, 1, 6, 32, 32)
    label[0, 0, 1:5, 4:14, 4:16] = 1
    label[0, 0, 2:6, 18:28, 16:30] = 6
    image = torch.rand(1, 1, 6, 32, 32)
    _, _, _, kwargs = VolumePromptPrepareBatch(pass_label=True)({"image": image, "label": label})
    inferer = VolumeClickProtocolInferer(num_classes=7, chunk_size=8, max_clicks=2)
    out = inferer(image, net, **kwargs)
    assert out.shape == (1, 7, 6, 32, 32)
    assert inferer.last["iou"].shape == (2, 3) and inferer.last["object"] == [1, 6]
    assert np.isfinite(inferer.last["dice"]).all() and (inferer.last["dice"] <= 1).all()
    with pytest.raises(ValueError, match="label"):
        inferer(image, net, kwargs["prompts"], kwargs["object_ids"])


def test_window_training_rounds_add_clicks_on_the_worst_slice_and_share_one_encoding():
    torch.manual_seed(0)
    net = SAM2Segmenter("tiny", 64, in_channels=1)
    label = torch.zeros(1, 1, 4, 32, 32)
    label[0, 0, :, 4:14, 4:16] = 1
    batch = {"image": torch.rand(1, 1, 4, 32, 32), "label": label}
    frames, targets, _, kwargs = SliceWindowPrepareBatch(box_jitter=0.0, pass_label=True)(batch)
    calls = []
    handle = net.sam.image_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        out = SliceWindowInferer(correction_rounds=2)(frames, net, **kwargs)
    finally:
        handle.remove()
    assert len(calls) == 1 and len(out["rounds"]) == 3
    assert out["logits"].shape == (1, 4, 32, 32)
    loss = PropagationLoss()(out, targets)
    assert torch.isclose(loss, torch.stack([PropagationLoss()(r, targets) for r in out["rounds"]]).mean())
    loss.backward()
    with pytest.raises(ValueError, match="pass_label"):
        SliceWindowInferer(correction_rounds=1)(frames, net, kwargs["frame_table"], kwargs["init_prompts"],
                                                kwargs["step_prompts"])


def test_protocol_and_training_feed_the_previous_logits_back_on_the_corrected_slice(monkeypatch):
    import sam2tune.engines.volume_clicks as clicks_mod
    import sam2tune.engines.volume_inferers as inferers_mod

    torch.manual_seed(0)
    net = SAM2Segmenter("tiny", 64, in_channels=1).eval()
    label = torch.zeros(1, 1, 6, 32, 32)
    label[0, 0, 1:5, 4:14, 4:16] = 1
    image = torch.rand(1, 1, 6, 32, 32)
    seen, real = [], clicks_mod.propagate_volume

    def spy(*args, **kwargs):
        seen.append([list(p) for p in args[2]])
        out = real(*args, **kwargs)
        seen[-1].append(out[2])
        return out

    monkeypatch.setattr(clicks_mod, "propagate_volume", spy)
    _, _, _, kwargs = VolumePromptPrepareBatch(pass_label=True)({"image": image, "label": label})
    VolumeClickProtocolInferer(num_classes=2, chunk_size=8, max_clicks=2)(image, net, **kwargs)
    assert len(seen) == 3 and seen[0][0][0].mask_logits is None
    for before, after in zip(seen[:-1], seen[1:], strict=True):
        key = after[0][0]  # the corrected slice leads, with the logits the previous round gave there
        assert key.mask_logits is not None and torch.equal(key.mask_logits, before[-1][0, key.slice])

    fed, real_add = [], inferers_mod.add_click
    monkeypatch.setattr(inferers_mod, "add_click", lambda *a, **k: fed.append(k["mask_logits"]) or real_add(*a, **k))
    frames, _, _, kw = SliceWindowPrepareBatch(box_jitter=0.0, pass_label=True)(
        {"image": image[:, :, 1:5], "label": label[:, :, 1:5]})
    out = SliceWindowInferer(correction_rounds=2)(frames, net.train(), **kw)
    assert len(fed) == 2 and all(f is not None and f.shape == (16, 16) for f in fed)
    assert out["rounds"][0]["low_res"].shape == (1, 4, 16, 16) and fed[0].requires_grad  # not detached
