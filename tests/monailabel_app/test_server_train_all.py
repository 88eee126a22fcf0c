"""POST /train round trips through one running server for the bundles whose train.json reads other label formats.

steel_defect_sam2 reads run-length strings (train.csv), knee_cartilage_mri_sam2 2D .npy slices of its volumes and
lung_nodule_ct_sam2 NIfTI pairs; the datastore holds masks. One tiny-CPU server serves the three over a studies
folder of photos and volumes (optic_cup_fundus_sam2 trains in test_server.py, abdomen_ct_sam2 in
test_server_volume.py, both through MONAI Label's background training process). Here each bundle trains one
epoch with `run_sync=true` (in the server process: the same app.train, without a training process to start per
bundle), writes model.pt, and the same server then serves it.
"""

from __future__ import annotations

import json
import os
import shutil

import nibabel as nib
import numpy as np
import pytest
import requests
from monailabel.client import MONAILabelClient
from PIL import Image

MODELS = ("steel_defect_sam2", "knee_cartilage_mri_sam2", "lung_nodule_ct_sam2")


def _photo(path, rng, shape=(64, 96)):
    """A grey 'steel strip' with a bright scratch; returns the scratch mask (H, W)."""
    img = rng.normal(100, 10, shape).clip(0, 255)
    mask = np.zeros(shape, np.uint8)
    mask[20:30, 15:70] = 1
    img[mask > 0] = 220
    Image.fromarray(np.repeat(img.astype(np.uint8)[..., None], 3, -1)).save(path)
    return mask


def _volume(path, rng, shape=(40, 40, 4)):
    """A volume (I, J, K) with a bright ellipsoid; returns its mask."""
    ii, jj, kk = np.mgrid[: shape[0], : shape[1], : shape[2]]
    mask = (((ii - 20) / 8.0) ** 2 + ((jj - 18) / 6.0) ** 2 + ((kk - 1.5) / 1.2) ** 2 <= 1).astype(np.uint8)
    vol = rng.normal(-700, 30, shape) + 800 * mask
    nib.save(nib.Nifti1Image(vol.astype(np.float32), np.diag([1.0, 1.0, 2.5, 1.0])), str(path))
    return mask


@pytest.fixture(scope="module")
def all_server(server_control, tmp_path_factory):
    """(client, work dir, model_dir, log path, {image id: mask}) of one server for MODELS over 2 photos + 2 volumes."""
    start_server, stop_server = server_control
    work = tmp_path_factory.mktemp("train_all")
    studies = work / "studies"
    studies.mkdir()
    rng = np.random.default_rng(0)
    masks = {f"strip{i}": _photo(studies / f"strip{i}.png", rng) for i in (1, 2)}
    masks.update({f"vol{i}": _volume(studies / f"vol{i}.nii.gz", rng) for i in (1, 2)})
    conf = {"models": ",".join(MODELS), "image_size": 64, "sam2_variant": "tiny", "device": "cpu"}
    model_dir, log_path = work / "model", work / "server.log"
    proc, url = start_server(str(studies), str(model_dir), str(log_path), conf)
    client = MONAILabelClient(url, tmpdir=str(work / "client"))
    for image_id, mask in masks.items():
        if image_id.startswith("strip"):
            path = work / f"{image_id}_label.png"
            Image.fromarray(mask).save(path)
        else:
            path = work / f"{image_id}_label.nii.gz"
            nib.save(nib.Nifti1Image(mask, np.diag([1.0, 1.0, 2.5, 1.0])), str(path))
        client.save_label(image_id, str(path), tag="final")
    yield client, work, model_dir, log_path, masks
    stop_server(proc)
    shutil.rmtree(work, ignore_errors=True)


def test_info_lists_a_trainer_per_bundle_with_its_own_val_interval(all_server):
    client = all_server[0]
    trainers = client.info()["trainers"]
    assert set(MODELS) <= set(trainers)
    # val_interval is epochs in every bundle (steel validates by steps too, through its own val_interval_steps)
    assert trainers["steel_defect_sam2"]["config"]["val_interval"] == 1
    assert "val_interval_steps" not in trainers["steel_defect_sam2"]["config"]
    assert trainers["knee_cartilage_mri_sam2"]["config"]["val_interval"] == 1


@pytest.mark.parametrize("model", MODELS)
def test_train_round_trip_then_serve(all_server, model):
    client, work, model_dir, log_path, masks = all_server
    photo = model.startswith("steel")
    image_id, click = ("strip1", [40, 25]) if photo else ("vol1", [20, 18, 1])
    _, before = client.infer(model, image_id, {"foreground": [click]})
    body = {"max_epochs": 1, "finetune": "decoder_only", "learning_rate": 1e-3, "batch_size": 4}
    res = requests.post(f"{client._server_url}/train/{model}", params={"run_sync": "true"}, json=body, timeout=600)
    assert res.status_code == 200, f"{res.status_code} {res.text[:2000]}\n{log_path.read_text()[-3000:]}"
    stats = res.json()
    assert stats["images"] == 2 and stats["model"].endswith(f"{model}/model.pt")  # photos for steel, volumes else
    assert (model_dir / model / "model.pt").is_file()
    out = model_dir / model / "train_output"
    if model.startswith("steel"):  # RLE rows built from the masks: one per photo, decoding back to the mask
        summary = json.loads((out / "training_summary.json").read_text())
        assert summary["total_steps"] == 1 and summary["best_step"] == 1  # validated at the end, not every step
    else:
        history = json.loads((out / "training_history.json").read_text())
        assert len(history if isinstance(history, list) else history["epochs"]) == 1
    if model.startswith("knee"):  # 2D slices of the labelled volumes, as the knee reader writes them
        slices = sorted(os.listdir(model_dir / model / "train_slices" / "vol1"))
        labelled = sorted(int(k) for k in np.nonzero(masks["vol1"].any(axis=(0, 1)))[0])
        assert slices == [f"{kind}_{k:04d}.npy" for kind in ("img", "lab") for k in labelled]
        lab = np.load(model_dir / model / "train_slices" / "vol1" / f"lab_{labelled[0]:04d}.npy")
        np.testing.assert_array_equal(lab, masks["vol1"][:, :, labelled[0]].T.astype(np.float32))
    _, after = client.infer(model, image_id, {"foreground": [click]})  # hot reload, strict: every key matched
    assert before["weights_version"] is None and after["weights_version"] is not None
    assert after["mean_probability"] != pytest.approx(before["mean_probability"], abs=1e-7)


def test_rle_items_decode_to_the_saved_mask(tmp_path):
    """The steel mapping (mask -> train.csv RLE) is lossless and leaves empty labels out."""
    from sam2tune.data.severstal import rle_decode
    from sam2tune.monailabel.train import rle_items

    rng = np.random.default_rng(1)
    mask = _photo(tmp_path / "a.png", rng)
    Image.fromarray(mask * 255).save(tmp_path / "a_label.png")
    Image.fromarray(np.zeros_like(mask)).save(tmp_path / "b_label.png")
    items = rle_items([{"image": str(tmp_path / "a.png"), "label": str(tmp_path / "a_label.png"), "id": "a"},
                       {"image": str(tmp_path / "a.png"), "label": str(tmp_path / "b_label.png"), "id": "b"}])
    assert [i["id"] for i in items] == ["a_c1"] and items[0]["class_id"] == 1
    np.testing.assert_array_equal(rle_decode(items[0]["rle"], mask.shape), mask > 0)
