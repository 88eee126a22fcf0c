"""No server: --conf / request booleans given as strings, and the infer guard's handling of upload temp files."""

from __future__ import annotations

import os
import tempfile

import pytest
from fastapi import HTTPException

from sam2tune.monailabel.app import guard_infer_request, track_infer_uploads
from sam2tune.monailabel.infer import _flag
from sam2tune.monailabel.settings import AppSettings


class _Store:
    """Datastore stub: knows image T0001 only."""

    def get_image_uri(self, image_id: str) -> str:
        return "/studies/T0001.png" if image_id == "T0001" else ""


@pytest.mark.parametrize("raw", ["false", "False", "0", "no"])
def test_conf_amp_false_strings_disable_amp(raw, tmp_path):
    s = AppSettings.from_conf({"amp": raw}, str(tmp_path))
    assert s.use_amp("cuda") is False and s.use_amp("cpu") is False


def test_conf_amp_default_follows_device_and_typos_fail(tmp_path):
    s = AppSettings.from_conf({}, str(tmp_path))
    assert s.use_amp("cuda") is True and s.use_amp("cpu") is False
    assert AppSettings.from_conf({"amp": "True"}, str(tmp_path)).use_amp("cuda:0") is True
    with pytest.raises(ValueError, match="--conf amp"):
        AppSettings.from_conf({"amp": "flase"}, str(tmp_path))


def test_train_request_amp_string(tmp_path):
    from sam2tune.monailabel.model import BundleModel
    from sam2tune.monailabel.train import SAM2BundleTrainTask

    task = SAM2BundleTrainTask(
        BundleModel("optic_cup_fundus_sam2", AppSettings.from_conf({"device": "cuda"}, str(tmp_path)))
    )
    assert task.overrides({}, [])["amp"] is True  # default on CUDA
    for raw in ("false", "False", "0", False):
        assert task.overrides({"amp": raw}, [])["amp"] is False
    assert task.overrides({"amp": "true"}, [])["amp"] is True
    with pytest.raises(ValueError, match="amp must be true or false"):
        task.overrides({"amp": "maybe"}, [])
    off = SAM2BundleTrainTask(
        BundleModel("optic_cup_fundus_sam2", AppSettings.from_conf({"device": "cuda", "amp": "false"}, str(tmp_path)))
    )
    assert off.overrides({}, [])["amp"] is False


def test_infer_request_flag_strings():
    assert _flag("False") is False and _flag("0") is False and _flag(True) is True
    with pytest.raises(HTTPException) as err:
        _flag("sometimes")
    assert err.value.status_code == 400 and "propagate" in err.value.detail


def test_guard_accepts_only_the_upload_written_for_the_request():
    from monailabel.endpoints import infer as endpoint

    assert track_infer_uploads()
    infers = {"m": object()}
    # what POST /infer does with `file`: a name from (its) tempfile, written, then app.infer(request)
    upload = endpoint.tempfile.NamedTemporaryFile(suffix=".png").name
    with open(upload, "wb") as fh:
        fh.write(b"x")
    other = tempfile.NamedTemporaryFile(suffix=".png", delete=False)  # a tmp* file the endpoint did not write
    other.close()
    try:
        guard_infer_request({"model": "m", "image": upload}, infers, _Store())  # passes
        for path in (upload, other.name):  # a second claim of the upload, and any other temp file: 400
            assert os.path.basename(path).startswith("tmp") and os.path.dirname(path) == tempfile.gettempdir()
            with pytest.raises(HTTPException) as err:
                guard_infer_request({"model": "m", "image": path}, infers, _Store())
            assert (
                err.value.status_code == 400 and "never paths" in err.value.detail and "upload it" in err.value.detail
            )
    finally:
        os.remove(upload)
        os.remove(other.name)
    guard_infer_request({"model": "m", "image": "T0001"}, infers, _Store())
    with pytest.raises(HTTPException) as err:
        guard_infer_request({"model": "m", "image": "T0009"}, infers, _Store())
    assert err.value.status_code == 404
