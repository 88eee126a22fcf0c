"""Corrective clicks through a real server, with a model that follows clicks: a positive click on a missed region
grows the mask there, a negative click inside a false-positive region shrinks it.

A fine-tune on the bundles' phantoms learns to ignore prompts (one bright object per image: the image alone gives the
answer; see the clicks-to-accuracy tables in the bundle READMEs), so it cannot show whether the app's clicks reach the
model the right way round. Here the test trains a model for which the clicks are the only way to the answer: photos
with two identical bright discs A and B, where a click on A means "A" (or, less often, both) and a box around both
means "both" (or, less often, only A). The training is the package's own interactive loop
(``sam2tune.networks.interactive.decode_rounds``: corrective clicks from the error, the previous low-res mask fed
back) with the ``decoder_only`` strategy (prompt encoder too) on embeddings computed once: ~4 min on 2 CPU cores, no
checkpoint. The server then serves those weights, and the clicks go in as Slicer sends them (IJK = x, y on photos,
every earlier click resent), so a swapped axis, a wrong label or a lost mask prompt makes the test fail.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from monai.losses import DiceCELoss
from monailabel.client import MONAILabelClient
from PIL import Image

from sam2tune.finetune import apply_finetune
from sam2tune.losses import CorrectionRoundsLoss
from sam2tune.monailabel.model import BundleModel
from sam2tune.monailabel.settings import AppSettings
from sam2tune.networks.interactive import decode_rounds

MODEL = "optic_cup_fundus_sam2"
SIZE = 96  # photo size; the model runs at 64 px
STEPS, BATCH, ROUNDS, TRAIN_IMAGES, SEED = 1500, 16, 2, 128, 1


def two_discs(rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray]:
    """A photo (3, SIZE, SIZE) in [0, 1] (8-bit steps, as the server reads it) with two identical discs at least 30
    px apart -> (photo, [mask A, mask B] (SIZE, SIZE) bool, centres (2, 2) xy, radii (2,))."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    while True:
        centres, radii = rng.uniform(18, SIZE - 18, size=(2, 2)), rng.uniform(8, 12, size=2)
        if np.hypot(*(centres[0] - centres[1])) > radii.sum() + 30:
            break
    img = rng.normal(0.15, 0.03, (SIZE, SIZE))
    discs = []
    for (x, y), r in zip(centres, radii, strict=True):
        disc = np.hypot(xx - x, yy - y) <= r
        img[disc] = rng.normal(0.75, 0.03, int(disc.sum()))
        discs.append(disc)
    img = np.round(np.clip(img, 0, 1) * 255) / 255
    return np.repeat(img[None], 3, 0).astype(np.float32), discs, centres, radii


def box_around(centres: np.ndarray, radii: np.ndarray) -> list[float]:
    """xyxy box 2 px around both discs."""
    lo, hi = (centres - radii[:, None]).min(0) - 2, (centres + radii[:, None]).max(0) + 2
    return [float(v) for v in np.round([lo[0], lo[1], hi[0], hi[1]])]


def _first_prompts(data: list, idx: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    """Targets (B, 1, H, W) and first prompts: half a positive click on disc A (target A, 30 %: both), half a box
    around both (target both, 40 %: A only) -> (target, boxes (B, 4) NaN = none, points (B, 1, 2), labels (B, 1))."""
    targets, boxes, points, labels = [], [], [], []
    for i in idx:
        _, discs, centres, radii = data[i]
        a = int(rng.integers(2))
        if rng.random() < 0.5:
            target = discs[a] | discs[1 - a] if rng.random() < 0.3 else discs[a]
            boxes.append([np.nan] * 4), points.append([centres[a]]), labels.append([1])
        else:
            target = discs[a] if rng.random() < 0.4 else discs[a] | discs[1 - a]
            boxes.append(box_around(centres, radii)), points.append([[0.0, 0.0]]), labels.append([-1])
        targets.append(target[None])
    as_tensor = lambda v: torch.tensor(np.array(v), dtype=torch.float32)  # noqa: E731
    return as_tensor(targets), as_tensor(boxes), as_tensor(points), torch.tensor(labels)


def train_click_following(network: torch.nn.Module, seed: int = SEED, steps: int = STEPS) -> None:
    """Train `network` (a SAM2Segmenter at 64 px) in place to follow clicks on two-disc photos (see the module)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    apply_finetune(network, {"strategy": "decoder_only", "train_prompt_encoder": True})
    data = [two_discs(rng) for _ in range(TRAIN_IMAGES)]
    with torch.no_grad():  # the encoder is frozen: its embeddings are computed once
        feats = network.encode(torch.tensor(np.array([d[0] for d in data])))
    optimiser = torch.optim.AdamW([p for p in network.parameters() if p.requires_grad], lr=1e-3)
    # the bundles' loss: DiceCELoss per round (on all rounds at once, MONAI would take the rounds for classes and
    # apply a softmax cross-entropy across them: trained that way the model ignored every prompt)
    loss_fn = CorrectionRoundsLoss(DiceCELoss(sigmoid=True))
    network.train()
    for _ in range(steps):
        idx = rng.integers(TRAIN_IMAGES, size=BATCH)
        target, boxes, points, labels = _first_prompts(data, idx, rng)
        batch = {"image_embed": feats["image_embed"][idx], "high_res_feats": [f[idx] for f in feats["high_res_feats"]]}
        logits = decode_rounds(network, batch, target, ROUNDS, (SIZE, SIZE), boxes, points, labels)
        loss = loss_fn(logits, target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    network.eval()


# Opt-in: passed on its own (commit e014f10, 2 passed), but in a full `make test` run (fresh clone of 79894b1) the model
# trained here ignored the prompts (click on A and box gave the same mask): the training is not robust yet (issue 15).
pytestmark = pytest.mark.skipif(
    os.environ.get("SAM2TUNE_LONG_TESTS", "0") in ("", "0"),
    reason="~4 min and its in-test training is not yet robust (ignored the prompts in a full-suite run): set "
    "SAM2TUNE_LONG_TESTS=1 to run it",
)


@pytest.fixture(scope="module")
def following(server_control, tmp_path_factory):
    """(client, [(image id, discs, centres, radii)]) of a server whose optic-cup model is the click-following one."""
    work = tmp_path_factory.mktemp("following")
    studies, model_dir = str(work / "studies"), str(work / "model")
    os.makedirs(studies)
    settings = AppSettings(model_dir=str(work / "local"), sam2_variant="tiny", image_size=64, device="cpu")
    network = BundleModel(MODEL, settings).network()  # the architecture the server builds for this bundle
    train_click_following(network)
    target = os.path.join(model_dir, MODEL, "model.pt")
    os.makedirs(os.path.dirname(target))
    torch.save(network.state_dict(), target)
    rng = np.random.default_rng(1000)  # photos the model never saw
    cases = []
    for n in range(3):
        img, discs, centres, radii = two_discs(rng)
        Image.fromarray(np.round(img[0] * 255).astype(np.uint8)).convert("RGB").save(os.path.join(studies, f"D{n}.png"))
        cases.append((f"D{n}", discs, centres, radii))
    start, stop = server_control
    conf = {"models": MODEL, "image_size": 64, "sam2_variant": "tiny", "device": "cpu"}
    proc, url = start(studies, model_dir, str(work / "server.log"), conf)
    yield MONAILabelClient(url, tmpdir=str(work / "client")), cases
    stop(proc)


def _infer(client: MONAILabelClient, image: str, request: dict, discs: list) -> tuple[float, float, int, dict]:
    """Answer of the server -> (fraction of disc A in the mask, of disc B, mask pixels outside both, params)."""
    path, params = client.infer(MODEL, image, request)
    mask = np.asarray(Image.open(path)) > 0
    assert mask.shape == (SIZE, SIZE), mask.shape
    a, b = discs
    return float(mask[a].mean()), float(mask[b].mean()), int((mask & ~a & ~b).sum()), params


def _click(xy: np.ndarray) -> list[int]:
    return [int(round(float(xy[0]))), int(round(float(xy[1])))]  # Slicer's IJK on a photo: i = column, j = row


def test_a_positive_click_on_a_missed_disc_grows_the_mask_there(following):
    client, cases = following
    for image, discs, centres, _ in cases:
        a = _click(centres[0])
        cov_a, cov_b, outside, p = _infer(client, image, {"foreground": [a], "reset": True}, discs)
        print(f"{image}: click on A -> A {cov_a:.2f}, B {cov_b:.2f}, outside {outside} px")
        assert cov_a > 0.8 and cov_b < 0.3, (image, cov_a, cov_b)  # the model answers the clicked disc
        grown_a, grown_b, grown_out, p2 = _infer(client, image, {"foreground": [a, _click(centres[1])]}, discs)
        print(f"{image}: + positive click on B -> A {grown_a:.2f}, B {grown_b:.2f}, outside {grown_out} px")
        assert p2["session"]["refined"] is True and p2["session"]["new_clicks"] == 1, p2["session"]
        assert grown_b > cov_b + 0.5, (image, cov_b, grown_b)  # grown where the click was
        assert grown_a > 0.8 and grown_out < outside + 100, (image, grown_a, grown_out)  # and not elsewhere


def test_a_negative_click_in_a_false_positive_disc_shrinks_it(following):
    client, cases = following
    drops = []
    for image, discs, centres, radii in cases:
        box = box_around(centres, radii)
        cov_a, cov_b, outside, _ = _infer(client, image, {"roi": box, "reset": True}, discs)
        print(f"{image}: box around both -> A {cov_a:.2f}, B {cov_b:.2f}, outside {outside} px")
        assert cov_a > 0.8 and cov_b > 0.5, (image, cov_a, cov_b)  # the box gives both discs
        request = {"roi": box, "background": [_click(centres[1])]}
        shrunk_a, shrunk_b, shrunk_out, p2 = _infer(client, image, request, discs)
        print(f"{image}: + negative click on B -> A {shrunk_a:.2f}, B {shrunk_b:.2f}, outside {shrunk_out} px")
        assert p2["session"]["refined"] is True and p2["session"]["new_clicks"] == 1, p2["session"]
        assert shrunk_b < cov_b - 0.2 and shrunk_a > 0.7, (image, cov_b, shrunk_b, shrunk_a)
        drops.append(cov_b - shrunk_b)
    assert np.mean(drops) > 0.4, drops  # on average most of the false positive is gone
