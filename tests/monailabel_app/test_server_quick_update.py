"""The fast loop through a real server (--conf auto_update true): a final label saved with PUT /datastore/label
updates the served weights in the background, infer keeps answering meanwhile, and two labels in quick succession
end in one model trained on both whose model.pt is what the server serves.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from monailabel.client import MONAILabelClient
from PIL import Image

from sam2tune.monailabel.images import load_image
from sam2tune.monailabel.infer import predict_slice
from sam2tune.monailabel.model import BundleModel
from sam2tune.monailabel.prompts import parse_prompts
from sam2tune.monailabel.settings import AppSettings
from sam2tune.networks import load_finetuned_state_dict, read_state_dict

from .conftest import quick_update_served, served_status

MODEL = "optic_cup_fundus_sam2"
REQUEST = {"foreground": [[48, 48]], "roi": [20, 20, 76, 76], "reset": True}


@pytest.fixture(scope="module")
def updating(refuge_studies, tmp_path_factory, server_control):
    """(client, url, studies, model_dir) of a server with quick updates on (its own studies: labels are written)."""
    start, stop = server_control
    work = tmp_path_factory.mktemp("quick")
    studies = str(work / "studies")
    os.makedirs(studies)
    for name in os.listdir(refuge_studies):  # the photos only: other modules save labels into the shared folder
        if name.endswith(".jpg"):
            shutil.copy(os.path.join(refuge_studies, name), studies)
    model_dir = str(work / "model")
    conf = {"models": MODEL, "image_size": 64, "sam2_variant": "tiny", "device": "cpu", "auto_update": "true",
            "update_steps": 150, "update_learning_rate": 1e-3}
    proc, url = start(studies, model_dir, str(work / "server.log"), conf)
    yield MONAILabelClient(url, tmpdir=str(work / "client")), url, studies, model_dir
    stop(proc)


def _label(tmp_path, name: str) -> str:
    yy, xx = np.mgrid[:96, :96]
    path = str(tmp_path / f"{name}.png")
    Image.fromarray((np.hypot(yy - 48, xx - 48) <= 10).astype(np.uint8)).save(path)
    return path


def test_a_final_label_updates_the_served_weights_while_infer_keeps_answering(updating, tmp_path):
    client, url, _, _ = updating
    _, p0 = client.infer(MODEL, "T0001", REQUEST)
    assert p0["weights"]["source"] == "random init" and p0["weights_version"] is None
    answer = client.save_label("T0002", _label(tmp_path, "T0002"), tag="final")
    assert answer["quick_update"] == {MODEL: 1}
    during = []
    while True:  # infer while the update runs: answered, by the old weights, until the swap
        running = served_status(url, MODEL)["quick_update"]["running"]
        _, p = client.infer(MODEL, "T0001", REQUEST)
        during.append((running, p["weights"]["generation"]))
        if not running:
            break
    assert during[0][0] and during[0][1] in (p0["weights"]["generation"], p0["weights"]["generation"] + 1), during
    status = quick_update_served(url, MODEL, 1)
    assert status["quick_update"]["last"]["superseded"] is False and "error" not in status["quick_update"]["last"]
    _, p1 = client.infer(MODEL, "T0001", REQUEST)
    assert p1["weights"]["source"] == "quick update" and p1["weights"]["trained_on"] == ["T0002"], (p1, status)
    assert p1["weights"]["generation"] > p0["weights"]["generation"] and p1["weights_version"] is not None
    assert p1["mean_probability"] != pytest.approx(p0["mean_probability"], abs=1e-6)  # other weights answered
    assert status["embeddings"]["hits"] >= 1  # T0001's embedding was reused across the infers
    # a label saved with another tag queues nothing
    assert "quick_update" not in client.save_label("V0002", _label(tmp_path, "draft"), tag="original")


def test_two_labels_in_quick_succession_end_in_one_coherent_model(updating, tmp_path):
    client, url, studies, model_dir = updating
    first = served_status(url, MODEL)["quick_update"]["requested"]
    client.save_label("V0002", _label(tmp_path, "V0002"), tag="final")
    client.save_label("V0001", _label(tmp_path, "V0001"), tag="final")
    status = quick_update_served(url, MODEL, first + 2)
    last = status["quick_update"]["last"]
    assert last["request"] == first + 2 and {"V0002", "V0001"} <= set(last["trained_on"])
    assert status["weights"]["request"] == first + 2
    # what the server answers is what model.pt holds: same answer from a local network loaded strictly from it
    _, served = client.infer(MODEL, "T0001", REQUEST)
    settings = AppSettings(model_dir=str(tmp_path / "m"), sam2_variant="tiny", image_size=64, device="cpu")
    local = BundleModel(MODEL, settings)
    path = os.path.join(model_dir, MODEL, "model.pt")
    load_finetuned_state_dict(local.network(), read_state_dict(path), source=path)
    image = load_image(os.path.join(studies, "T0001.jpg"), local.in_channels)
    prob = predict_slice(local, image.array, parse_prompts(REQUEST, image.ijk_shape).get(-1))
    assert served["mean_probability"] == pytest.approx(float(prob.mean()), abs=1e-5)
