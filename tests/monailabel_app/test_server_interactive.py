"""Interactive sessions through a real server: the second click of a session refines the first answer with SAM's mask
prompt, `reset` / a new ROI start over, and every answer suggests the next click.

The server serves weights the test wrote (model.pt, random init with a fixed seed), so the test computes here, with
the very same network, what "mask prompt + all clicks" and "all clicks alone" give, and checks which one the server
answered.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from monailabel.client import MONAILabelClient
from PIL import Image

from sam2tune.monailabel.images import load_image
from sam2tune.monailabel.infer import predict_slice
from sam2tune.monailabel.model import BundleModel
from sam2tune.monailabel.prompts import parse_prompts
from sam2tune.monailabel.settings import AppSettings

MODEL = "optic_cup_fundus_sam2"
IMAGE = "T0001"


@pytest.fixture(scope="module")
def served(server, tmp_path_factory):
    """(client, local BundleModel with the served weights, image path): model.pt written before the first infer."""
    url, studies, model_dir, _ = server
    settings = AppSettings(model_dir=str(tmp_path_factory.mktemp("local_model")), sam2_variant="tiny", image_size=64,
                           device="cpu")
    torch.manual_seed(1234)
    local = BundleModel(MODEL, settings)
    state = local.network().state_dict()
    target = os.path.join(model_dir, MODEL, "model.pt")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    torch.save(state, target + ".tmp")
    os.replace(target + ".tmp", target)  # the server sees a complete file or none
    client = MONAILabelClient(url, tmpdir=str(tmp_path_factory.mktemp("client")))
    return client, local, os.path.join(studies, f"{IMAGE}.jpg")


def _local(model: BundleModel, path: str, request: dict, fed=None):
    """What the served network gives for `request` on the photo, optionally with a fed-back low-res mask."""
    image = load_image(path, model.in_channels)
    prompt = parse_prompts(request, image.ijk_shape).get(-1)
    return predict_slice(model, image.array, prompt, mask_prompt=fed, return_low_res=True)


def _check_suggestion(params: dict, shape=(96, 96)) -> None:
    s = params["suggested_click"]
    if s is None:  # allowed only when the model is sure everywhere: then mean probability sits near 0 or 1
        assert params["mean_probability"] < 0.05 or params["mean_probability"] > 0.95
        return
    assert set(s) == {"point", "label", "score"} and s["label"] in ("positive", "negative")
    assert len(s["point"]) == 2 and 0 <= s["point"][0] < shape[0] and 0 <= s["point"][1] < shape[1]
    assert 0.5 <= s["score"] <= 1.0


def test_second_click_refines_with_the_fed_back_mask_and_reset_starts_over(served):
    client, local, path = served
    first = {"foreground": [[48, 48]], "roi": [20, 20, 76, 76]}
    second = {"foreground": [[48, 48]], "background": [[26, 70]], "roi": [20, 20, 76, 76]}
    f1, p1 = client.infer(MODEL, IMAGE, {**first, "reset": True})
    assert p1["weights_version"] is not None  # the test's weights are served
    assert p1["session"] == {"refined": False, "reason": "reset", "clicks": 1, "new_clicks": 0}
    prob1, low1 = _local(local, path, first)
    assert p1["mean_probability"] == pytest.approx(float(prob1.mean()), abs=1e-5)
    np.testing.assert_array_equal(np.asarray(Image.open(f1)), (prob1 >= 0.5).astype(np.uint8))

    f2, p2 = client.infer(MODEL, IMAGE, second)  # Slicer resends the first click with the new one
    assert p2["session"] == {"refined": True, "reason": "extended", "clicks": 2, "new_clicks": 1}
    refined, _ = _local(local, path, second, fed=low1)
    fresh, _ = _local(local, path, second)
    assert abs(float(refined.mean()) - float(fresh.mean())) > 1e-4  # the fed-back mask changes the answer
    assert p2["mean_probability"] == pytest.approx(float(refined.mean()), abs=1e-5)
    np.testing.assert_array_equal(np.asarray(Image.open(f2)), (refined >= 0.5).astype(np.uint8))
    _check_suggestion(p1)
    _check_suggestion(p2)

    _, p3 = client.infer(MODEL, IMAGE, {**second, "reset": True})
    assert p3["session"]["refined"] is False and p3["session"]["reason"] == "reset"
    assert p3["mean_probability"] == pytest.approx(float(fresh.mean()), abs=1e-5)
    _, p4 = client.infer(MODEL, IMAGE, {**second, "roi": [18, 20, 76, 76]})  # a new box starts over
    assert p4["session"]["reason"] == "roi changed" and p4["session"]["refined"] is False
    _, p5 = client.infer(MODEL, IMAGE, {"foreground": [[48, 48]], "roi": [18, 20, 76, 76]})  # a click removed
    assert p5["session"]["reason"] == "clicks changed"
    _, p6 = client.infer(MODEL, IMAGE, {"foreground": [[48, 48]], "roi": [18, 20, 76, 76]})  # the same again
    assert p6["session"]["reason"] == "same clicks" and p6["mean_probability"] == pytest.approx(
        p5["mean_probability"], abs=1e-6
    )


def test_sessions_are_per_image_and_label(served):
    client, _, _ = served
    _, a = client.infer(MODEL, "T0002", {"foreground": [[40, 40]], "reset": "true"})
    _, b = client.infer(MODEL, "V0001", {"foreground": [[40, 40], [50, 50]]})  # other image: its own session
    assert a["session"]["reason"] == "reset" and b["session"]["refined"] is False
    _, c = client.infer(MODEL, "T0002", {"foreground": [[40, 40], [50, 50]]})
    assert c["session"]["refined"] is True and c["session"]["clicks"] == 2


def test_reset_is_a_checked_boolean(server):
    import json

    import requests

    url = server[0]
    for bad in ("$__import__('os')", "maybe"):
        res = requests.post(f"{url}/infer/{MODEL}", params={"image": IMAGE}, timeout=60,
                            data={"params": json.dumps({"foreground": [[48, 48]], "reset": bad})})
        assert res.status_code == 400 and "reset" in res.json()["detail"], res.text
