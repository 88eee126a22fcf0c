"""The app behind a real server, driven by monailabel's own client the way 3D Slicer's plugin calls it."""

from __future__ import annotations

import concurrent.futures
import json
import os
import time
import urllib.request

import numpy as np
import pytest
from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException
from PIL import Image

MODEL = "optic_cup_fundus_sam2"


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    """monailabel.client.MONAILabelClient on the module's server."""
    return MONAILabelClient(server[0], tmpdir=str(tmp_path_factory.mktemp("client")))


def _status(call) -> tuple[int, str]:
    """Run a client call expected to fail -> (HTTP status, response text)."""
    with pytest.raises(MONAILabelClientException) as err:
        call()
    msg = str(err.value.msg)
    return int(msg.split("Status: ")[1].split(";")[0]), msg


def test_info_lists_every_bundle(client):
    from sam2tune.bundles import list_bundles

    info = client.info()
    for name in list_bundles():
        assert info["models"][name]["type"] == "deepgrow"
        assert name in info["trainers"]
    assert info["models"][MODEL]["dimension"] == 2
    assert f"{MODEL}_auto" in info["models"]  # the bundle has a learned prompt token
    assert {"random", "first", "epistemic"} <= set(info["strategies"])


def test_infer_clicks_roi_and_auto(client):
    f, params = client.infer(MODEL, "T0001", {"foreground": [[48, 48]], "background": [[4, 4]]})
    mask = np.asarray(Image.open(f))
    assert mask.shape == (96, 96) and set(np.unique(mask)) <= {0, 1}
    assert params["foreground_voxels"] == int(mask.sum())
    assert params["label_names"] == {"optic_cup": 1}
    f2, p2 = client.infer(MODEL, "T0001", {"roi": [30, 30, 70, 70]})
    assert np.asarray(Image.open(f2)).shape == (96, 96)
    assert p2["mean_probability"] != params["mean_probability"]  # the prompt reached the network
    f3, _ = client.infer(f"{MODEL}_auto", "T0001", {})
    assert np.asarray(Image.open(f3)).shape == (96, 96)


def test_bad_input_is_4xx_and_server_keeps_serving(client, server, tmp_path):
    code, msg = _status(lambda: client.infer(MODEL, "no_such_image", {"foreground": [[1, 1]]}))
    assert code == 404 and "not in the datastore" in msg
    code, msg = _status(lambda: client.infer(MODEL, "../../etc/passwd", {"foreground": [[1, 1]]}))
    assert code == 400 and "never paths" in msg
    code, msg = _status(lambda: client.infer(MODEL, "T0001", {"foreground": [[500, 3]]}))
    assert code == 400 and "outside the image" in msg
    code, msg = _status(lambda: client.infer(MODEL, "T0001", {}))
    assert code == 400 and "foreground click or an ROI" in msg
    code, msg = _status(lambda: client.infer("no_such_model", "T0001", {"foreground": [[1, 1]]}))
    assert code == 404
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG not really")
    code, msg = _status(lambda: client.save_label("T0002", str(corrupt), tag="final"))
    assert code == 422 and "Cannot read label" in msg
    wrong = tmp_path / "wrong.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(wrong)
    code, msg = _status(lambda: client.save_label("T0002", str(wrong), tag="final"))
    assert code == 422 and "shape" in msg
    code, _ = _status(lambda: client.save_label("no_such_image", str(wrong), tag="final"))
    assert code == 404
    assert client.datastore()["objects"]["T0002"]["labels"] == {}  # nothing was stored
    _, params = client.infer(MODEL, "T0001", {"foreground": [[48, 48]]})  # still serving
    assert params["foreground_voxels"] >= 0


def test_twenty_concurrent_infers(client):
    def one(i):
        _, p = client.infer(MODEL, ["T0001", "T0002", "V0001", "V0002"][i % 4], {"foreground": [[40 + i, 50]]})
        return p["foreground_voxels"]

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(20)))
    assert len(results) == 20 and all(r >= 0 for r in results)


def _label(path, cx, cy, r=12):
    yy, xx = np.mgrid[:96, :96]
    Image.fromarray((((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r) * 1).astype(np.uint8)).save(path)
    return str(path)


def test_label_active_learning_train_and_hot_reload(client, server, training_waiter, tmp_path):
    url, studies, model_dir, log_path = server
    prompt = {"foreground": [[48, 48]]}
    _, before = client.infer(MODEL, "T0001", prompt)
    assert before["weights_version"] is None

    client.save_label("T0001", _label(tmp_path / "a.png", 48, 48), tag="final")
    client.save_label("T0001", _label(tmp_path / "b.png", 50, 46), tag="final")  # replaces: v1 kept
    client.save_label("T0002", _label(tmp_path / "c.png", 40, 52), tag="final")
    labels_dir = os.path.join(studies, "labels", "final")
    kept = os.listdir(os.path.join(labels_dir, "versions"))
    assert kept == ["T0001.v1.png"]
    assert np.asarray(Image.open(os.path.join(labels_dir, "versions", kept[0])))[48, 48] == 1

    nxt = client.next_sample("epistemic", {})
    assert nxt["id"] in {"V0001", "V0002"} and len(nxt["scores"]) == 2  # only unlabeled images are scored
    assert nxt["score"] == max(nxt["scores"].values()) > 0

    client.train_start(MODEL, {"max_epochs": 2, "learning_rate": 0.01, "batch_size": 2})
    # MONAI Label registers the training process from a worker thread just after answering; a second request sent
    # before that moment would be queued, not refused. Wait (bounded) until /train/ reports it running.
    deadline = time.monotonic() + 30
    while not client.train_status(check_if_running=True) and time.monotonic() < deadline:
        time.sleep(0.05)
    code, msg = _status(lambda: client.train_start(MODEL, {"max_epochs": 1}))
    assert code == 429 and "Already Running" in msg
    training_waiter(client, log_path, timeout=150)
    assert os.path.isfile(os.path.join(model_dir, MODEL, "model.pt"))
    history = json.load(open(os.path.join(model_dir, MODEL, "train_output", "training_history.json")))
    assert len(history if isinstance(history, list) else history.get("epochs", [])) == 2
    info = json.loads(urllib.request.urlopen(url + "/info/").read())
    assert info["train_stats"][MODEL]["epochs_run"] == 2

    _, after = client.infer(MODEL, "T0001", prompt)  # same server, no restart
    assert after["weights_version"] is not None
    assert after["mean_probability"] != pytest.approx(before["mean_probability"], abs=1e-6)


def test_upload_passes_but_a_named_temp_file_is_400(client, tmp_path):
    """POST /infer with `file` works; naming some other /tmp/tmp* file as the image is refused (not read)."""
    import tempfile

    photo = tmp_path / "mine.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(photo)
    f, params = client.infer(MODEL, "", {"foreground": [[48, 48]]}, file=str(photo))
    assert np.asarray(Image.open(f)).shape == (96, 96) and params["foreground_voxels"] >= 0
    other = tempfile.NamedTemporaryFile(suffix=".png", delete=False)  # a tmp* file in the server's temp dir
    other.close()
    try:
        Image.open(photo).save(other.name)
        code, msg = _status(lambda: client.infer(MODEL, other.name, {"foreground": [[48, 48]]}))
        assert code == 400 and "never paths" in msg and "upload it" in msg
    finally:
        os.remove(other.name)
