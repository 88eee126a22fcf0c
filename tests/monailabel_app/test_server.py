"""The app behind a real server, driven by monailabel's own client the way 3D Slicer's plugin calls it."""

from __future__ import annotations

import concurrent.futures
import json
import os
import time
import urllib.request

import numpy as np
import pytest
import requests
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
    _, first = client.infer(MODEL, "T0001", {"foreground": [[48, 48]]})
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
    f, params = client.infer(MODEL, "T0001", {"foreground": [[48, 48]]})  # still serving, and still the same
    assert params["foreground_voxels"] == first["foreground_voxels"] == int(np.asarray(Image.open(f)).sum())
    assert params["mean_probability"] == pytest.approx(first["mean_probability"], abs=1e-6)


def test_twenty_concurrent_infers(client):
    """Twenty requests at once give what the same requests give one by one (one network shared under a lock)."""

    def one(i):
        f, p = client.infer(MODEL, ["T0001", "T0002", "V0001", "V0002"][i % 4], {"foreground": [[40 + i, 50]]})
        assert p["foreground_voxels"] == int(np.asarray(Image.open(f)).sum())
        return p["foreground_voxels"], round(p["mean_probability"], 5)

    alone = [one(i) for i in range(0, 20, 5)]
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(20)))
    assert len(results) == 20 and results[0::5] == alone
    assert len({r[1] for r in results}) > 1  # different images / clicks reached the network


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
    mask = np.asarray(Image.open(f))
    assert mask.shape == (96, 96) and params["foreground_voxels"] == int(mask.sum())
    other = tempfile.NamedTemporaryFile(suffix=".png", delete=False)  # a tmp* file in the server's temp dir
    other.close()
    try:
        Image.open(photo).save(other.name)
        code, msg = _status(lambda: client.infer(MODEL, other.name, {"foreground": [[48, 48]]}))
        assert code == 400 and "never paths" in msg and "upload it" in msg
    finally:
        os.remove(other.name)


# ---- nothing from a request runs as code ---------------------------------------------------------------------------
def _touch(marker) -> str:
    """A config expression that would create `marker` if a bundle config ever evaluated it."""
    return f"$__import__('pathlib').Path('{marker}').touch()"


def _no_job_and_no_marker(url: str, marker) -> None:
    time.sleep(1.0)  # a background job would have been registered by now
    res = requests.get(f"{url}/train/", params={"check_if_running": "true"}, timeout=30)
    assert res.status_code == 404 and "No Train Tasks are currently Running" in res.text
    assert not marker.exists()


@pytest.mark.parametrize("run_sync", [False, True])
def test_train_injection_is_refused_and_runs_nothing(server, tmp_path, run_sync):
    url, marker = server[0], tmp_path / "x"
    body = {"finetune": f"$__import__('os').system('touch {marker}') or 'lora'", "max_epochs": 1}
    res = requests.post(f"{url}/train/{MODEL}", params={"run_sync": str(run_sync).lower()}, json=body, timeout=60)
    assert res.status_code == 400, res.text
    assert "finetune" in res.json()["detail"] and "refused" in res.json()["detail"]
    _no_job_and_no_marker(url, marker)


@pytest.mark.parametrize("key", ["finetune", "label_tag", "amp", "max_epochs", "learning_rate", "batch_size",
                                 "val_interval", "gpus", "client_id"])
def test_every_train_key_refuses_config_strings(server, tmp_path, key):
    url, marker = server[0], tmp_path / "x"
    res = requests.post(f"{url}/train/{MODEL}", json={key: _touch(marker)}, timeout=60)
    assert res.status_code == 400 and f"{key}=" in res.json()["detail"], res.text
    _no_job_and_no_marker(url, marker)


def test_unknown_train_key_and_bad_values_are_named(server):
    url = server[0]
    res = requests.post(f"{url}/train/{MODEL}", json={"max_epoch": 1}, timeout=60)
    detail = res.json()["detail"]
    assert res.status_code == 400 and "unknown key 'max_epoch'" in detail and "'max_epochs'" in detail
    for body, expected in (({"finetune": "lorra"}, "['full', 'decoder_only', 'lora', 'adapter', 'prompt']"),
                           ({"max_epochs": 0}, "out of range"), ({"learning_rate": "fast"}, "a number"),
                           ({"amp": "maybe"}, "true or false")):
        res = requests.post(f"{url}/train/{MODEL}", json=body, timeout=60)
        assert res.status_code == 400 and expected in res.json()["detail"] and next(iter(body)) in res.json()["detail"]
    res = requests.post(f"{url}/train/", json={MODEL: {"finetune": "$1"}}, timeout=60)  # all trainers at once
    assert res.status_code == 400 and "finetune" in res.json()["detail"]
    res = requests.get(f"{url}/train/", params={"check_if_running": "true"}, timeout=30)
    assert res.status_code == 404


@pytest.mark.parametrize("key", ["label", "label_tag", "result_extension", "device", "threshold", "propagate",
                                 "save_label", "any_other_key"])
def test_every_infer_option_refuses_config_strings(server, tmp_path, key):
    url, marker = server[0], tmp_path / "x"
    params = {"foreground": [[48, 48]], key: _touch(marker)}
    res = requests.post(
        f"{url}/infer/{MODEL}", params={"image": "T0001"}, data={"params": json.dumps(params)}, timeout=60
    )
    assert res.status_code == 400 and key in res.json()["detail"] and "refused" in res.json()["detail"], res.text
    assert not marker.exists()


def test_infer_params_that_are_not_json_are_400(server):
    url = server[0]
    for raw in ("{not json", "[1, 2]"):
        res = requests.post(f"{url}/infer/{MODEL}", params={"image": "T0001"}, data={"params": raw}, timeout=60)
        assert res.status_code == 400 and "`params`" in res.json()["detail"], res.text
    res = requests.post(f"{url}/infer/{MODEL}", params={"image": "T0001"}, timeout=60,
                        data={"params": json.dumps({"foreground": [[48, 48]], "threshold": 2})})
    assert res.status_code == 400 and "threshold" in res.json()["detail"] and "out of range" in res.json()["detail"]


def test_output_dicom_seg_on_a_local_datastore_is_400_naming_the_way_out(server):
    res = requests.post(f"{server[0]}/infer/{MODEL}", params={"image": "T0001", "output": "dicom_seg"}, timeout=60,
                        data={"params": json.dumps({"foreground": [[48, 48]]})})
    assert res.status_code == 400 and "DICOMweb" in res.json()["detail"] and "output=image" in res.json()["detail"]
    viewers = requests.get(f"{server[0]}/info/", timeout=60).json()["sam2tune"][MODEL]["viewers"]
    assert viewers["ohif"] is False and "secondary capture" in viewers["why_not_ohif"]  # a 2D bundle says why
