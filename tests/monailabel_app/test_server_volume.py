"""The BTCV bundle behind a real server: click -> 3D propagation, multi-organ labels submitted, trained,
hot-reloaded."""

from __future__ import annotations

import os
import shutil

import nibabel as nib
import numpy as np
import pytest
from monailabel.client import MONAILabelClient

MODEL = "abdomen_ct_sam2"
ORGANS = [1, 6]  # spleen, liver: the two largest organs of the phantom, well apart


@pytest.fixture(scope="module")
def volume_server(server_control, tmp_path_factory):
    """(client, studies, phantom folder, model_dir, log path) of a tiny-CPU server over three BTCV phantom CTs."""
    from sam2tune.data.phantoms.btcv import write_btcv_phantoms

    start_server, stop_server = server_control
    work = tmp_path_factory.mktemp("volume_server")
    phantoms, studies = work / "btcv", work / "studies"
    write_btcv_phantoms(str(phantoms), cases=3, seed=0, size=48, depth=10, organs=ORGANS)
    studies.mkdir()
    for name in sorted(os.listdir(phantoms / "img")):  # MONAI Label's local datastore: images flat, <id>.nii.gz
        shutil.copy(phantoms / "img" / name, studies / name)
    conf = {"models": MODEL, "image_size": 64, "sam2_variant": "tiny", "device": "cpu"}
    model_dir, log_path = work / "model", work / "server.log"
    proc, url = start_server(str(studies), str(model_dir), str(log_path), conf)
    yield MONAILabelClient(url, tmpdir=str(work / "client")), studies, phantoms, model_dir, log_path
    stop_server(proc)
    shutil.rmtree(work, ignore_errors=True)  # checkpoints: free the disk once the module is done


def _liver_click(phantoms, case: str) -> list[int]:
    """IJK voxel at the liver's centre on its middle slice."""
    label = np.asarray(nib.load(str(phantoms / "label" / f"label{case}.nii.gz")).dataobj)
    i, j, k = np.nonzero(label == 6)
    kk = int((k.min() + k.max()) // 2)
    on = k == kk
    return [int(np.median(i[on])), int(np.median(j[on])), kk]


def test_volume_click_train_on_multi_organ_labels_and_hot_reload(volume_server, training_waiter):
    client, studies, phantoms, model_dir, log_path = volume_server
    shape = nib.load(str(studies / "img0001.nii.gz")).shape
    prompt = {"foreground": [_liver_click(phantoms, "0001")], "label": "liver"}
    path, before = client.infer(MODEL, "img0001", prompt)
    mask = np.asarray(nib.load(path).dataobj)
    assert mask.shape == shape and set(np.unique(mask).tolist()) <= {0, 6}
    assert before["weights_version"] is None and before["label_names"]["liver"] == 6

    for case in ("0001", "0002"):  # the phantom's own organ maps, as a clinician's corrected labels
        client.save_label(f"img{case}", str(phantoms / "label" / f"label{case}.nii.gz"), tag="final")
    client.train_start(MODEL, {"max_epochs": 1, "finetune": "decoder_only", "learning_rate": 1e-3})
    training_waiter(client, log_path, timeout=240)
    assert (model_dir / MODEL / "model.pt").is_file()
    copies = sorted((model_dir / MODEL / "train_labels").iterdir())
    assert len(copies) == 2
    organ_values_kept = (set(np.unique(np.asarray(nib.load(str(c)).dataobj)).tolist()) == {0, *ORGANS} for c in copies)
    assert all(organ_values_kept)

    path, after = client.infer(MODEL, "img0001", prompt)  # same server, no restart
    assert after["weights_version"] is not None
    assert after["mean_probability"] != pytest.approx(before["mean_probability"], abs=1e-6)
    assert np.asarray(nib.load(path).dataobj).shape == shape
