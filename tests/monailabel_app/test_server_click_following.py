"""Corrective clicks through a real server, with a model that follows clicks: a positive click on a missed region
grows the mask there, a negative click inside a false-positive region shrinks it.

A fine-tune on the bundles' phantoms learns to ignore prompts (see the clicks-to-accuracy tables in the bundle
READMEs), so it cannot show whether the app's clicks reach the model the right way round. Here the test trains, with
``sam2tune.tools.click_following``, a model for which clicks are the only way to the answer (two identical discs: a
click on A means "A", a box around both means "both"; ~11 min on one CPU thread, random initialisation, seeded), checks
it in model pixels on 10 held-out photos, and the server then serves those weights as the optic-cup bundle's; the
clicks go in as Slicer sends them (IJK = x, y on photos, every earlier click resent). On every photo the server's
answer must equal the model's own (the wiring: a swapped axis, a wrong label or a lost mask prompt changes it), and
on most photos a positive click must grow the mask there and a negative one shrink it (the behaviour).
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

pytestmark = pytest.mark.slow  # ~12 min in CI (one thread): the in-test training
MODEL = "optic_cup_fundus_sam2"
SEED = 1
# held-out photos; each check must pass on >= MIN_PASSED of them, in the model and through the server: below the
# minimum over the seeds tried (1-4 at one thread, 1 at two: 8 of 10, docs/monailabel.md), as one seed's model misses
# a photo or two (a full-suite run of df06fa4 asked all of 3 photos to pass and failed on one)
PHOTOS, MIN_PASSED = 10, 7
TOL = 0.1  # largest difference of a disc fraction between the server's answer and the model's own


@pytest.fixture(scope="module")
def following(server_control, tmp_path_factory):
    """(client, cases, model rows) of a server whose optic-cup model is the click-following one.

    cases: [(image id, discs, centres, radii)] of the held-out photos of ``evaluate_click_following`` (rng 1000, in
    its order); model rows: that function's answers of the model itself on them, before the server.
    """
    work = tmp_path_factory.mktemp("following")
    studies, model_dir = str(work / "studies"), str(work / "model")
    os.makedirs(studies)
    network = build_network(SEED)  # the architecture the server builds for this bundle; seeded initialisation
    train_click_following(network, SEED)
    rows = evaluate_click_following(network, photos=PHOTOS)  # the model itself: tells training from wiring
    passed = {c: sum(r[c] for r in rows) for c in CHECKS}
    print(f"click-following model, seed {SEED}, held-out photos passing each check (of {len(rows)}): {passed}")
    assert min(passed.values()) >= MIN_PASSED, f"the in-test training did not learn to follow clicks: {passed}"
    target = os.path.join(model_dir, MODEL, "model.pt")
    os.makedirs(os.path.dirname(target))
    torch.save(network.state_dict(), target)
    rng = np.random.default_rng(1000)  # the same photos, in the same order, as evaluate_click_following's
    cases = []
    for n in range(PHOTOS):
        img, discs, centres, radii = two_discs(rng)
        Image.fromarray(np.round(img[0] * 255).astype(np.uint8)).convert("RGB").save(os.path.join(studies, f"D{n}.png"))
        cases.append((f"D{n}", discs, centres, radii))
    start, stop = server_control
    conf = {"models": MODEL, "image_size": 64, "sam2_variant": "tiny", "device": "cpu"}
    proc, url = start(studies, model_dir, str(work / "server.log"), conf)
    yield MONAILabelClient(url, tmpdir=str(work / "client")), cases, rows
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


def _same_as_model(image: str, step: str, server: tuple[float, float], row: dict) -> None:
    """The server's answer equals the model's own (disc fractions within TOL: the clicks are rounded to pixels and
    the photo goes through the server's PNG reading and resizing), whatever the model does."""
    model = (row[f"{step}_a"], row[f"{step}_b"])
    assert max(abs(s - m) for s, m in zip(server, model, strict=True)) < TOL, (image, step, server, model)


def test_a_positive_click_on_a_missed_disc_grows_the_mask_there(following):
    client, cases, rows = following
    clicked = grown = 0
    for (image, discs, centres, _), row in zip(cases, rows, strict=True):
        a = _click(centres[0])
        cov_a, cov_b, outside, p = _infer(client, image, {"foreground": [a], "reset": True}, discs)
        print(f"{image}: click on A -> A {cov_a:.2f}, B {cov_b:.2f}, outside {outside} px "
              f"(model: {row['click_a']:.2f}, {row['click_b']:.2f})")
        _same_as_model(image, "click", (cov_a, cov_b), row)
        grown_a, grown_b, grown_out, p2 = _infer(client, image, {"foreground": [a, _click(centres[1])]}, discs)
        print(f"{image}: + positive click on B -> A {grown_a:.2f}, B {grown_b:.2f}, outside {grown_out} px "
              f"(model: {row['grow_a']:.2f}, {row['grow_b']:.2f})")
        assert p2["session"]["refined"] is True and p2["session"]["new_clicks"] == 1, p2["session"]
        _same_as_model(image, "grow", (grown_a, grown_b), row)  # refined: all clicks + the previous mask
        clicked += cov_a > 0.8 and cov_b < 0.3  # the model answers the clicked disc
        grown += grown_b > cov_b + 0.5 and grown_a > 0.8 and grown_out < outside + 100  # grown there, not elsewhere
    print(f"through the server, of {len(cases)} photos: click answers A on {clicked}, the positive click grows B on "
          f"{grown}")
    assert clicked >= MIN_PASSED and grown >= MIN_PASSED, (clicked, grown)


def test_a_negative_click_in_a_false_positive_disc_shrinks_it(following):
    client, cases, rows = following
    boxed = shrunk = 0
    drops = []
    for (image, discs, centres, radii), row in zip(cases, rows, strict=True):
        box = box_around(centres, radii)
        cov_a, cov_b, outside, _ = _infer(client, image, {"roi": box, "reset": True}, discs)
        print(f"{image}: box around both -> A {cov_a:.2f}, B {cov_b:.2f}, outside {outside} px "
              f"(model: {row['box_a']:.2f}, {row['box_b']:.2f})")
        _same_as_model(image, "box", (cov_a, cov_b), row)
        request = {"roi": box, "background": [_click(centres[1])]}
        shrunk_a, shrunk_b, shrunk_out, p2 = _infer(client, image, request, discs)
        print(f"{image}: + negative click on B -> A {shrunk_a:.2f}, B {shrunk_b:.2f}, outside {shrunk_out} px "
              f"(model: {row['shrink_a']:.2f}, {row['shrink_b']:.2f})")
        assert p2["session"]["refined"] is True and p2["session"]["new_clicks"] == 1, p2["session"]
        _same_as_model(image, "shrink", (shrunk_a, shrunk_b), row)
        boxed += cov_a > 0.8 and cov_b > 0.5  # the box gives both discs
        shrunk += shrunk_b < cov_b - 0.2 and shrunk_a > 0.7
        drops.append(cov_b - shrunk_b)
    print(f"through the server, of {len(cases)} photos: the box gives both on {boxed}, the negative click shrinks B "
          f"on {shrunk}; drops of B {np.round(drops, 2).tolist()}")
    assert boxed >= MIN_PASSED and shrunk >= MIN_PASSED, (boxed, shrunk)
    assert np.mean(drops) > 0.4, drops  # on average most of the false positive is gone
