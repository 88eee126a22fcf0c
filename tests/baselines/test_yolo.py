"""YOLOSegBaseline / YOLOSegLoss: offline build, train/eval outputs, instance targets, a learning step, overrides."""

from __future__ import annotations

import math
import os

import pytest
import torch

from sam2tune.baselines.yolo import (
    BACKGROUND_LOGIT,
    YOLOSegBaseline,
    YOLOSegLoss,
    label_to_yolo_targets,
    yolo_overrides,
)


@pytest.fixture(scope="module")
def net():
    """One yolov8n-seg at 64 px with the box channel, built offline from its YAML (no weights)."""
    torch.manual_seed(0)
    return YOLOSegBaseline(image_size=64, in_channels=3, model_yaml="yolov8n-seg.yaml", prompt_channel=True)


def _label():
    lab = torch.zeros(2, 1, 64, 64)
    lab[0, 0, 10:30, 12:40] = 1  # two separate objects in image 0, none in image 1
    lab[0, 0, 44:56, 46:62] = 1
    return lab


def test_built_offline_with_random_weights(net):
    assert os.environ["YOLO_OFFLINE"] == "1" and os.path.isdir(os.environ["YOLO_CONFIG_DIR"])
    assert net.model.model[0].conv.in_channels == 4  # RGB + box channel
    assert net.model.model[-1].nc == 1
    assert 3_000_000 < sum(p.numel() for p in net.parameters()) < 3_600_000  # yolov8n-seg size
    with pytest.raises(ValueError, match="multiple of 32"):
        YOLOSegBaseline(image_size=50)
    with pytest.raises(ValueError, match="out_channels must be 1"):
        YOLOSegBaseline(image_size=64, out_channels=2)


def test_targets_from_label_components():
    t = label_to_yolo_targets(_label(), (16, 16))
    assert t["batch_idx"].tolist() == [0.0, 0.0] and t["cls"].tolist() == [[0.0], [0.0]]
    # object 1: x 12..39, y 10..29 -> centre (26, 20), size (28, 20) over 64 px; normalised xywh
    assert torch.allclose(t["bboxes"][0], torch.tensor([26 / 64, 20 / 64, 28 / 64, 20 / 64]))
    assert t["masks"].shape == (2, 16, 16)
    assert set(t["masks"][0].unique().tolist()) == {0.0, 1.0, 2.0} and t["masks"][1].sum() == 0
    empty = label_to_yolo_targets(torch.zeros(1, 1, 32, 32), (8, 8))
    assert empty["bboxes"].shape == (0, 4) and empty["batch_idx"].shape == (0,)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        label_to_yolo_targets(torch.zeros(1, 2, 8, 8), (2, 2))


def test_eval_mode_returns_logits_at_input_size(net):
    net.eval()
    boxes = torch.tensor([[5.0, 5.0, 20.0, 20.0], [math.nan] * 4])
    with torch.no_grad():
        out = net(torch.rand(2, 3, 48, 40), boxes=boxes)
    assert out.shape == (2, 1, 48, 40) and torch.isfinite(out).all()
    assert out.max() <= 50 and out.min() >= BACKGROUND_LOGIT - 1e-4
    net.conf_threshold = 0.0  # keep every instance: the union is now real mask logits, not the background value
    with torch.no_grad():
        full = net(torch.rand(1, 3, 64, 64))
    net.conf_threshold = 0.25
    assert (full > BACKGROUND_LOGIT).any()


def test_train_step_lowers_loss_and_empty_label_works(net):
    torch.manual_seed(0)
    net.train()
    loss_fn = YOLOSegLoss(net)
    x, lab = torch.rand(2, 3, 64, 64), _label()
    boxes = torch.tensor([[12.0, 10.0, 40.0, 30.0], [math.nan] * 4])
    pred = net(x, boxes=boxes)
    assert isinstance(pred, dict) and pred["proto"].shape == (2, 32, 16, 16)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(3):
        loss = loss_fn(net(x, boxes=boxes), lab)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert loss.ndim == 0 and losses[-1] < losses[0], losses
    assert set(loss_fn.last_items) >= {"box_loss", "seg_loss", "cls_loss", "dfl_loss"}
    empty = loss_fn(net(x, boxes=boxes), torch.zeros(2, 1, 64, 64))
    empty.backward()  # no instances: only the classification term (all background) is left
    assert math.isfinite(empty.item()) and empty.item() > 0 and loss_fn.last_items["seg_loss"] == 0.0
    with pytest.raises(TypeError, match="train-mode outputs"):
        loss_fn(torch.zeros(2, 1, 64, 64), lab)
    with pytest.raises(TypeError, match="YOLOSegBaseline"):
        YOLOSegLoss(torch.nn.Linear(2, 2))


def test_overrides_swap_network_loss_and_train_postprocessing():
    over = yolo_overrides("optic_cup_fundus_sam2", prompt="box")
    assert over["network_def"]["_target_"] == "sam2tune.baselines.YOLOSegBaseline"
    assert over["loss"] == {"_target_": "sam2tune.baselines.YOLOSegLoss", "network": "@network_def"}
    assert over["train#trainer#key_train_metric"] is None and over["prepare_batch#prompts"] == ["boxes"]
    ev = yolo_overrides("optic_cup_fundus_sam2", prompt="none", evaluate=True, distributed=True)
    assert ev["network_def"]["pretrained_checkpoint"] == "$@ckpt_dir + '/model.pt'"
    assert ev["network_def"]["prompt_channel"] is False and "network#module" in ev and "network" not in ev


def test_fits_a_toy_batch_and_eval_logits_score_it():
    """Loss -> eval-mode union logits end to end: a few dozen steps on 4 bright boxes give a real Dice in eval mode
    (with ultralytics' BatchNorm momentum 0.03 the eval scores stay below conf_threshold at this budget)."""
    torch.manual_seed(0)
    net = YOLOSegBaseline(image_size=64)
    assert {m.momentum for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.1}
    loss_fn = YOLOSegLoss(net)
    rects = [(10, 30, 12, 40), (20, 44, 20, 50), (30, 50, 5, 25), (8, 28, 30, 58)]  # y0, y1, x0, x1
    x, lab = torch.rand(4, 3, 64, 64) * 0.3, torch.zeros(4, 1, 64, 64)
    for i, (y0, y1, x0, x1) in enumerate(rects):
        lab[i, 0, y0:y1, x0:x1] = 1
        x[i, :, y0:y1, x0:x1] += 0.5
    boxes = torch.tensor([[x0, y0, x1, y1] for y0, y1, x0, x1 in rects], dtype=torch.float32)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net.train()
    for _ in range(90):
        loss = loss_fn(net(x, boxes=boxes), lab)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        pred = net(x, boxes=boxes) > 0
    dice = 2 * (pred & (lab > 0)).sum() / (pred.sum() + lab.sum())
    assert dice > 0.6, f"eval-mode Dice {dice:.3f} on a batch the loss has fitted"
