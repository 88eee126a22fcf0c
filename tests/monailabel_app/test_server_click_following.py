"""Corrective clicks through a real server, with a model that follows clicks: a positive click on a missed region
grows the mask there, a negative click inside a false-positive region shrinks it.

A fine-tune on the bundles' phantoms learns to ignore prompts (see the clicks-to-accuracy tables in the bundle
READMEs), so it cannot show whether the app's clicks reach the model the right way round. Here the test trains, with
``sam2tune.tools.click_following``, a model for which clicks are the only way to the answer (two identical discs: a
click on A means "A", a box around both means "both"; ~7 min on 2 CPU cores, random initialisation, seeded), checks
it in model pixels, and the server then serves those weights as the optic-cup bundle's; the clicks go in as Slicer
sends them (IJK = x, y on photos, every earlier click resent), so a swapped axis, a wrong label or a lost mask prompt
makes the test fail.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from monailabel.client import MONAILabelClient
from PIL import Image

from sam2tune.tools.click_following import (
    CHECKS,
    SIZE,
    box_around,
    build_network,
    evaluate_click_following,
    train_click_following,
    two_discs,
)

# Opt-in again: passed on its own (commit 09b4d78), but in a full fresh-clone `make test` of df06fa4 the box around
# both discs on D0 gave A 0.39 / B 0.33 (the model-level check before it passed): not robust in CI yet (issue 15).
pytestmark = [
    pytest.mark.slow,  # ~8 min: the in-test training
    pytest.mark.skipif(os.environ.get("SAM2TUNE_LONG_TESTS", "0") in ("", "0"),
                       reason="~8 min, and its in-test training is not yet robust in a full-suite run (a box on D0 "
                       "failed on df06fa4): set SAM2TUNE_LONG_TESTS=1 to run it"),
]
MODEL = "optic_cup_fundus_sam2"
SEED = 1


@pytest.fixture(scope="module")
def following(server_control, tmp_path_factory):
    """(client, [(image id, discs, centres, radii)]) of a server whose optic-cup model is the click-following one."""
    work = tmp_path_factory.mktemp("following")
    studies, model_dir = str(work / "studies"), str(work / "model")
    os.makedirs(studies)
    network = build_network(SEED)  # the architecture the server builds for this bundle; seeded initialisation
    train_click_following(network, SEED)
    rows = evaluate_click_following(network)  # the model itself, before the server: tells training from wiring
    passed = {c: sum(r[c] for r in rows) for c in CHECKS}
    print(f"click-following model, seed {SEED}, held-out photos passing each check (of {len(rows)}): {passed}")
    assert min(passed.values()) >= 8, f"the in-test training did not learn to follow clicks: {passed}"
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
