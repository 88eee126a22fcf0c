"""Interactive SAM2: correction rounds share one encoder pass and feed the mask back; the click protocol records curves.
"""

import numpy as np
import pytest
import torch
from monai.losses import DiceCELoss

from sam2tune.engines import ClickProtocolInferer, InteractiveInferer, PromptPrepareBatch
from sam2tune.losses import CorrectionRoundsLoss
from sam2tune.networks import SAM2Segmenter


@pytest.fixture(scope="module")
def net() -> SAM2Segmenter:
    torch.manual_seed(0)
    return SAM2Segmenter("tiny", 64).eval()


IMAGE = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
LABEL = torch.zeros(2, 1, 64, 64)
LABEL[0, 0, 10:30, 12:40] = 1
LABEL[1, 0, 30:60, 20:50] = 1
BOXES = torch.tensor([[12.0, 10.0, 39.0, 29.0], [20.0, 30.0, 49.0, 59.0]])


def test_rounds_run_the_image_encoder_once(net):
    calls = []
    handle = net.sam.image_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            out = InteractiveInferer(correction_rounds=3)(IMAGE, net, label=LABEL, boxes=BOXES)
    finally:
        handle.remove()
    assert out.shape == (2, 4, 64, 64)
    assert len(calls) == 1


def test_zero_rounds_with_a_box_is_the_plain_forward(net):
    with torch.no_grad():
        a = InteractiveInferer(0)(IMAGE, net, label=LABEL, boxes=BOXES)
        b = net(IMAGE, boxes=BOXES)
    assert torch.equal(a, b)


def test_fed_back_mask_changes_the_decoder_output(net):
    with torch.no_grad():
        feats = net.encode(IMAGE)
        plain, _ = net.decode(feats, BOXES)
        fed, _ = net.decode(feats, BOXES, mask_prompt=plain[:, :1] * 0 + 10.0)
    assert (plain - fed).abs().max() > 1e-3


def test_later_rounds_differ_and_gradients_reach_the_decoder(net):
    net.train()
    try:
        out = InteractiveInferer(correction_rounds=2)(IMAGE, net, label=LABEL, boxes=BOXES)
        loss = CorrectionRoundsLoss(DiceCELoss(sigmoid=True))(out, LABEL)
        loss.backward()
        grads = [p.grad for p in net.sam.sam_mask_decoder.parameters() if p.grad is not None]
    finally:
        net.zero_grad(set_to_none=True)
        net.eval()
    assert not torch.allclose(out[:, 0], out[:, 2])
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_rounds_loss_of_one_round_is_the_base_loss():
    base = DiceCELoss(sigmoid=True)
    logits = torch.randn(2, 1, 16, 16)
    target = (torch.rand(2, 1, 16, 16) > 0.5).float()
    assert torch.allclose(CorrectionRoundsLoss(base)(logits, target), base(logits, target))


def test_click_first_prompt_drops_the_box(net):
    seen = {}

    def spy(image, **kw):
        seen.update(kw)
        return net(image, **kw)

    with torch.no_grad():
        InteractiveInferer(correction_rounds=1, first_prompt="click")(IMAGE, spy, label=LABEL, boxes=BOXES)
    assert torch.isnan(seen["boxes"]).all()
    x, y = seen["point_coords"][0, 0].long().tolist()
    assert LABEL[0, 0, y, x] == 1 and seen["point_labels"][0, 0] == 1


def test_click_protocol_records_curves_and_returns_the_last_round(net):
    inferer = ClickProtocolInferer(max_clicks=4)
    with torch.no_grad():
        out = inferer(IMAGE, net, label=LABEL, boxes=BOXES)
    assert out.shape == (2, 1, 64, 64)
    assert inferer.last["iou"].shape == (2, 5) and inferer.last["dice"].shape == (2, 5)
    with torch.no_grad():
        again = ClickProtocolInferer(max_clicks=4)
        again(IMAGE, net, label=LABEL, boxes=BOXES)
    assert (again.last["iou"] == inferer.last["iou"]).all()  # deterministic


def test_prepare_batch_passes_the_label_only_when_asked():
    batch = {"image": IMAGE, "label": LABEL, "box": BOXES}
    assert "label" in PromptPrepareBatch(["boxes"], pass_label=True)(batch)[3]
    assert "label" not in PromptPrepareBatch(["boxes"])(batch)[3]
    assert "label" not in PromptPrepareBatch(["boxes"], pass_label="true")({"image": IMAGE, "box": BOXES})[3]


@pytest.mark.parametrize("bad", [{"correction_rounds": -1}, {"correction_rounds": 1.5}, {"first_prompt": "scribble"},
                                 {"click_prob": 2.0}, {"click_mode": "median"}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        InteractiveInferer(**bad)


@pytest.mark.parametrize("user", ["suggest", "boundary"])
def test_simulated_users_record_whether_clicks_hit_errors(net, user):
    torch.manual_seed(0)
    inferer = ClickProtocolInferer(max_clicks=3, user=user)
    with torch.no_grad():
        inferer(IMAGE, net, label=LABEL, boxes=BOXES)
    hits = inferer.last["in_error"]
    assert hits.shape == (2, 3)
    assert set(np.unique(hits[~np.isnan(hits)])) <= {0.0, 1.0}
