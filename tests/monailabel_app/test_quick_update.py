"""Quick updates without a server: samples from labels, the embedding cache, a superseded update, the atomic swap.

A real BundleModel of the optic-cup bundle (sam2 tiny at 64 px, random init, CPU) and a datastore stand-in that
lists (image id, image file, label file) as ``sam2tune.monailabel.app.final_labels`` does.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from sam2tune.monailabel.model import BundleModel
from sam2tune.monailabel.quick_update import QuickUpdater, label_samples
from sam2tune.monailabel.settings import AppSettings
from sam2tune.networks import load_finetuned_state_dict, read_state_dict

MODEL = "optic_cup_fundus_sam2"


def _photo(path: str, centre: tuple[int, int], r: int = 12) -> np.ndarray:
    yy, xx = np.mgrid[:96, :96]
    disc = np.hypot(yy - centre[0], xx - centre[1]) <= r
    img = np.full((96, 96, 3), 40, np.uint8)
    img[disc] = 220
    Image.fromarray(img).save(path)
    return disc


@pytest.fixture()
def store(tmp_path):
    """(model, labelled list the updater reads, add(image id) -> writes a photo + its final label)."""
    settings = AppSettings(model_dir=str(tmp_path / "model"), sam2_variant="tiny", image_size=64, device="cpu")
    os.makedirs(tmp_path / "model" / MODEL, exist_ok=True)
    torch.manual_seed(0)
    model = BundleModel(MODEL, settings)
    labelled: list[tuple[str, str, str]] = []

    def add(image_id: str, centre=(48, 48)) -> None:
        img, lab = str(tmp_path / f"{image_id}.png"), str(tmp_path / f"{image_id}_label.png")
        disc = _photo(img, centre)
        Image.fromarray(disc.astype(np.uint8)).save(lab)
        labelled.append((image_id, img, lab))

    return model, labelled, add


def test_label_samples_box_and_click_follow_the_one_rule(store):
    model, labelled, add = store
    add("a", (40, 50))
    (s,) = label_samples(model, *labelled[0])
    assert s.x.shape == (3, 96, 96) and s.mask.shape == (96, 96) and s.mask.sum() > 0
    assert s.box.tolist() == [38.0, 28.0, 62.0, 52.0]  # tight inclusive box of the disc (x = column)
    assert s.mask[int(s.click[0, 1]), int(s.click[0, 0])] == 1  # the centre click lies inside


def test_update_swaps_the_decoder_writes_model_pt_and_keeps_embeddings(store):
    model, labelled, add = store
    add("a")
    before = {k: v.clone() for k, v in model.network().sam.sam_mask_decoder.state_dict().items()}
    encoder_before = next(model.network().sam.image_encoder.parameters()).clone()
    gen = model.generation
    updater = QuickUpdater(model, lambda: list(labelled), steps=5, learning_rate=1e-3)
    assert updater.submit("a") == 1 and updater.wait(120)
    last = updater.status()["last"]
    assert last["superseded"] is False and last["trained_on"] == ["a"] and last["steps"] == 5
    assert model.generation == gen + 1 and model.served["source"] == "quick update"
    after = model.network().sam.sam_mask_decoder.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the decoder trained
    assert torch.equal(next(model.network().sam.image_encoder.parameters()), encoder_before)  # the encoder did not
    # model.pt holds the served weights, complete: it loads strictly into a fresh network and gives the same decoder
    fresh = BundleModel(MODEL, model.settings).network()
    load_finetuned_state_dict(fresh, read_state_dict(model.model_path), source=model.model_path)
    for k, v in fresh.sam.sam_mask_decoder.state_dict().items():
        torch.testing.assert_close(v, after[k])
    assert model.embedding_stats()["kept"] == 1  # the image was encoded once and stays valid (encoder frozen)
    x = label_samples(model, *labelled[0])[0]
    model.features(x.x, x.key)
    assert model.embedding_stats()["hits"] >= 1
    # a full /train writes model.pt: the hot reload may change the encoder, so the cached embeddings go
    state = model.network().state_dict()
    torch.save(state, model.model_path + ".new")
    os.replace(model.model_path + ".new", model.model_path)
    os.utime(model.model_path, (1, 1))  # another mtime than the one the swap recorded
    model.network()
    assert model.embedding_stats()["kept"] == 0 and model.served["source"] == "model.pt"


def test_a_newer_label_supersedes_the_running_update(store):
    model, labelled, add = store
    add("a", (40, 40))
    add("b", (56, 56))
    gate, started = threading.Event(), threading.Event()
    updater = QuickUpdater(model, lambda: list(labelled), steps=3)
    real = updater._superseded

    def slow(target):  # hold the first update at its first step until the second label is in
        if target == 1:
            started.set()
            gate.wait(60)
        return real(target)

    updater._superseded = slow
    updater.submit("a")
    assert started.wait(60)
    updater.submit("b")
    gate.set()
    assert updater.wait(120)
    history = updater.history
    assert history[0] == {"request": 1, "superseded": True, "steps": 0}
    assert history[-1]["request"] == 2 and history[-1]["trained_on"] == ["a", "b"] and not history[-1]["superseded"]
    assert model.served["request"] == 2 and updater.status()["served"] == 2


def test_an_update_on_old_weights_is_not_swapped_in(store):
    model, labelled, add = store
    add("a")
    net = model.network()
    gen = model.generation
    assert model.swap_decoder(net, "/nonexistent", gen - 1, {}) is False  # taken from other weights: refused
    assert model.generation == gen


@pytest.mark.parametrize("bundle, trains_tracker_heads", [(MODEL, False), ("lung_nodule_ct_sam2", True)])
def test_a_volume_model_is_updated_as_its_tracker_answers(tmp_path, bundle, trains_tracker_heads):
    """One click on a volume is answered by SAM2's tracker: the best of 3 candidates by the IoU head, blanked where the
    object score is negative. So a volume model's update trains those heads (and every candidate token); a photo
    model's update (one mask, the image path) leaves them alone."""
    settings = AppSettings(model_dir=str(tmp_path / "model"), sam2_variant="tiny", image_size=64, device="cpu")
    torch.manual_seed(0)
    model = BundleModel(bundle, settings)
    updater = QuickUpdater(model, lambda: [])
    net = model.network()
    for p in net.sam.sam_mask_decoder.parameters():  # what a quick update trains (the served copy is frozen)
        p.requires_grad_(True)
    net.train()  # as the update runs its copy (SAM2's decoder picks among its tokens by stability in eval mode)
    x = np.random.default_rng(0).random((model.in_channels, 64, 64), dtype=np.float32)
    truth = torch.zeros(1, 1, 64, 64)
    truth[..., 20:40, 24:44] = 1
    click = {"point_coords": torch.tensor([[[34.0, 30.0]]]), "point_labels": torch.ones(1, 1)}
    net.zero_grad(set_to_none=True)
    updater._loss(net, model.features(x), click, truth).backward()
    decoder = net.sam.sam_mask_decoder

    def moved(module) -> bool:
        return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())

    assert moved(decoder.iou_prediction_head) is trains_tracker_heads
    assert moved(decoder.pred_obj_score_head) is trains_tracker_heads
    candidates = decoder.output_hypernetworks_mlps[1:]  # the best one is trained (min over candidates, as SAM2)
    assert any(moved(m) for m in candidates) is trains_tracker_heads
    assert moved(decoder.output_hypernetworks_mlps[0])  # the one mask of the image path, always
    box = {"boxes": torch.tensor([[24.0, 20.0, 43.0, 39.0]])}
    net.zero_grad(set_to_none=True)
    updater._loss(net, model.features(x), box, truth).backward()  # a box counts as two points: one mask
    assert not any(moved(m) for m in candidates)
    assert moved(decoder.pred_obj_score_head) is trains_tracker_heads
