"""No server: the typed whitelists (--conf, environment, train/infer values), label versions on both datastores,
and strict hot reload of a fine-tuned model.pt."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
import torch
from fastapi import HTTPException
from PIL import Image

from sam2tune.monailabel.settings import AppSettings
from sam2tune.monailabel.validation import TRAIN_SPECS, InputError, Spec, check_value

INJECTION = "$__import__('pathlib').Path('{}').touch()"
STRING_SETTINGS = [
    "models",
    "model_dir",
    "sam2_variant",
    "pretrained_checkpoint",
    "device",
    "finetune",
    "uncertainty",
    "amp",
]


@pytest.mark.parametrize("key", STRING_SETTINGS)
def test_conf_refuses_config_strings_for_every_string_setting(key, tmp_path):
    marker = tmp_path / "x"
    with pytest.raises(InputError, match=f"--conf {key}=.*refused") as err:
        AppSettings.from_conf({key: INJECTION.format(marker)}, str(tmp_path))
    assert err.value.key == key and not marker.exists()
    for bad in ("@network_def", "%other.json#x", "a#b"):
        with pytest.raises(InputError, match=key):
            AppSettings.from_conf({key: bad}, str(tmp_path))


def test_environment_settings_go_through_the_same_whitelist(tmp_path, monkeypatch):
    monkeypatch.setenv("SAM2TUNE_ML_DEVICE", "cpu'); __import__('os').system('true'); ('")
    with pytest.raises(InputError, match="environment SAM2TUNE_ML_DEVICE: device=.*'cpu', 'cuda' or 'cuda:N'"):
        AppSettings.from_conf({}, str(tmp_path))
    monkeypatch.setenv("SAM2TUNE_ML_DEVICE", "cuda:1")
    monkeypatch.setenv("SAM2TUNE_ML_MAX_EPOCHS", "3")
    s = AppSettings.from_conf({}, str(tmp_path))
    assert s.device == "cuda:1" and s.max_epochs == 3 and s.torch_device() == "cuda:1"


@pytest.mark.parametrize(("conf", "message"), [
    ({"sam2_variant": "huge"}, "['tiny', 'small', 'base_plus', 'large']"),
    ({"finetune": "lorra"}, "['full', 'decoder_only', 'lora', 'adapter', 'prompt']"),
    ({"device": "tpu"}, "'cpu', 'cuda' or 'cuda:N'"),
    ({"image_size": "65"}, "multiple of 16"),
    ({"max_epochs": "0"}, "out of range"),
    ({"learning_rate": "0"}, "out of range"),
    ({"threshold": "1.5"}, "out of range"),
    ({"mc_samples": "many"}, "an integer"),
    ({"amp": "flase"}, "true or false"),
    ({"models": "a/b"}, "plain names"),
])
def test_conf_bad_values_name_the_key_and_the_allowed_values(conf, message, tmp_path):
    with pytest.raises(InputError, match=f"--conf {next(iter(conf))}") as err:
        AppSettings.from_conf(conf, str(tmp_path))
    assert message in str(err.value)


def test_settings_built_in_code_are_checked_too(tmp_path):
    with pytest.raises(InputError, match="device"):
        AppSettings(device="cpu') or print('x")
    assert AppSettings(device="cuda:0", amp="True").amp == "true"


def test_check_value_types_and_bounds():
    assert check_value("max_epochs", "3", TRAIN_SPECS["max_epochs"]) == 3
    assert check_value("max_epochs", 3.0, TRAIN_SPECS["max_epochs"]) == 3
    assert check_value("amp", "False", TRAIN_SPECS["amp"]) is False
    for bad in (True, 2.5, "1e9", float("nan")):
        with pytest.raises(InputError):
            check_value("max_epochs", bad, TRAIN_SPECS["max_epochs"])
    with pytest.raises(InputError, match="inf"):
        check_value("learning_rate", "inf", TRAIN_SPECS["learning_rate"])
    with pytest.raises(InputError, match="plain name"):
        check_value("label_tag", "../final", TRAIN_SPECS["label_tag"])
    assert check_value("device", "", Spec("device", allow_empty=True)) == ""


def test_train_request_refuses_unknown_keys_by_name():
    from sam2tune.monailabel.train import check_train_request

    trainers = {"m": object()}
    with pytest.raises(HTTPException) as err:
        check_train_request({"model": "m", "max_epoch": 1}, trainers)
    assert (
        err.value.status_code == 400
        and "unknown key 'max_epoch'" in err.value.detail
        and "'max_epochs'" in err.value.detail
    )
    with pytest.raises(HTTPException) as err:
        check_train_request({"model": "other"}, trainers)
    assert err.value.status_code == 404
    got = check_train_request(
        {"model": "m", "max_epochs": "2", "amp": "false", "gpus": "all", "local_rank": 0}, trainers
    )
    assert got == {"max_epochs": 2, "amp": False, "gpus": "all", "local_rank": 0}


def test_infer_params_must_be_a_json_object():
    from sam2tune.monailabel.app import check_infer_options, parse_infer_params

    assert parse_infer_params("", "m") == {} and parse_infer_params('{"threshold": 0.3}', "m") == {"threshold": 0.3}
    for raw in ("{oops", "[]", "3"):
        with pytest.raises(HTTPException) as err:
            parse_infer_params(raw, "m")
        assert err.value.status_code == 400 and "`params`" in err.value.detail
    request = {"model": "m", "image": "T1", "threshold": "0.25", "propagate": "false", "client_id": "user-1"}
    assert check_infer_options(request) == {**request, "threshold": 0.25, "propagate": False}


# ---- label versions -------------------------------------------------------------------------------------------------
def _mask(path, value: int, shape=(8, 8)) -> str:
    Image.fromarray(np.full(shape, value, np.uint8)).save(path)
    return str(path)


@pytest.mark.parametrize("image_id", ["T1", "a[1]*?"])
def test_local_versions_never_overwrite_an_archived_label(tmp_path, image_id):
    from sam2tune.monailabel.datastore import VersionedLocalDatastore

    studies = tmp_path / "studies"
    studies.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(studies / f"{image_id}.png")
    store = VersionedLocalDatastore(str(studies), extensions=["*.png"], auto_reload=False)
    assert image_id in store.list_images()
    for value in (1, 2, 3):
        store.save_label(image_id, _mask(tmp_path / f"l{value}.png", value), "final", {})
    vdir = studies / "labels" / "final" / "versions"
    assert sorted(os.listdir(vdir)) == [f"{image_id}.v1.png", f"{image_id}.v2.png"]
    os.remove(vdir / f"{image_id}.v1.png")  # a deleted version must not make the next save reuse a number
    store.save_label(image_id, _mask(tmp_path / "l4.png", 4), "final", {})
    assert sorted(os.listdir(vdir)) == [f"{image_id}.v2.png", f"{image_id}.v3.png"]
    assert [int(np.asarray(Image.open(vdir / f"{image_id}.v{n}.png"))[0, 0]) for n in (2, 3)] == [2, 3]
    info = store.get_label_info(image_id, "final")
    assert info["version"] == 4 and info["previous_version"] == f"versions/{image_id}.v3.png"
    assert int(np.asarray(Image.open(store.get_label_uri(image_id, "final")))[0, 0]) == 4


def test_dicomweb_save_keeps_versions(tmp_path):
    """The DICOMweb path (SEG upload faked) archives the replaced cached label the same way and names its SEG."""
    from monailabel.datastore.local import LocalDatastore

    from sam2tune.monailabel.dicomweb import SAM2DICOMWebDatastore

    series = "1.2.826.0.1.3680043.8.498.1"
    cache = tmp_path / "cache"
    cache.mkdir()
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 4), np.float32), affine), str(cache / f"{series}.nii.gz"))
    store = object.__new__(SAM2DICOMWebDatastore)
    store.__dict__.update(LocalDatastore(str(cache), extensions=["*.nii.gz"], auto_reload=False).__dict__)
    uploads = []
    store.get_image_uri = lambda image_id: str(cache / f"{image_id}.nii.gz") if image_id == series else ""
    store.get_image_info = lambda image_id: {"StudyInstanceUID": "1.2.3", "PatientID": "p1"}
    store.upload_seg = lambda image_id, path, info: (
        uploads.append(path) or (f"1.2.9.{len(uploads)}", f"1.2.8.{len(uploads)}")
    )
    for value in (1, 2, 3):
        label = tmp_path / f"l{value}.nii.gz"
        nib.save(nib.Nifti1Image(np.full((6, 5, 4), value, np.uint8), affine), str(label))
        store.save_label(series, str(label), "final", {})
    vdir = cache / "labels" / "final" / "versions"
    assert sorted(os.listdir(vdir)) == [f"{series}.v1.nii.gz", f"{series}.v2.nii.gz"]
    assert [int(np.asarray(nib.load(str(vdir / f"{series}.v{n}.nii.gz")).dataobj)[0, 0, 0]) for n in (1, 2)] == [1, 2]
    info = store.get_label_info(series, "final")
    assert len(uploads) == 3 and info["version"] == 3 and info["SeriesInstanceUID"] == "1.2.9.3"
    assert info["previous_SeriesInstanceUID"] == "1.2.9.2"


# ---- strict hot reload -----------------------------------------------------------------------------------------------
def test_hot_reload_is_strict_and_loads_nothing_from_a_mismatched_file(tmp_path):
    from sam2tune.monailabel.model import BundleModel

    settings = AppSettings(model_dir=str(tmp_path / "model"), sam2_variant="tiny", image_size=64, device="cpu")
    model = BundleModel("optic_cup_fundus_sam2", settings)
    net = model.network()  # base (random) weights
    state = {k: v.clone() for k, v in net.state_dict().items()}
    key = next(k for k in state if k.endswith("mask_decoder.iou_token.weight"))
    os.makedirs(model.ckpt_dir)
    wrong = {k: v + 1 for k, v in state.items() if k != key}
    wrong["sam.not_a_sam2_key"] = torch.zeros(1)
    torch.save(wrong, model.model_path)
    with pytest.raises(HTTPException) as err:
        model.network()
    assert err.value.status_code == 500 and model.model_path in err.value.detail and key in err.value.detail
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())  # not half-loaded
    good = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    torch.save(good, model.model_path)
    os.utime(model.model_path, (1e9, 1e9))  # a new mtime, as a new training round gives
    assert torch.equal(model.network().state_dict()[key], good[key])


def test_correction_keys_are_typed_train_options():
    from sam2tune.monailabel.validation import check_mapping

    assert check_mapping({"correction_rounds": "3", "first_prompt": "click"}, TRAIN_SPECS, "train request") == {
        "correction_rounds": 3, "first_prompt": "click"}
    for bad in ({"correction_rounds": -1}, {"correction_rounds": "$7"}, {"first_prompt": "scribble"}):
        with pytest.raises(InputError):
            check_mapping(bad, TRAIN_SPECS, "train request")
