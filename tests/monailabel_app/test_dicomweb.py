"""The app against a real Orthanc DICOMweb server on loopback: infer on a CT series, label stored back as DICOM SEG."""

from __future__ import annotations

import json
import urllib.request

import nibabel as nib
import numpy as np
import pydicom
import pytest
import requests
import SimpleITK as sitk
from dicomweb_client import DICOMwebClient
from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException

from sam2tune.io.dicom_seg import read_dicom_seg
from sam2tune.io.dicom_series import write_dicom_series

from .conftest import quick_update_served

MODEL = "lung_nodule_ct_sam2"
D, H, W = 8, 64, 64


@pytest.fixture(scope="module")
def ct_series(orthanc, tmp_path_factory):
    """A CT series (8 slices of 64x64, a +40 HU sphere in -800 HU lung) written with pydicom and STOW-RS'd to
    Orthanc."""
    zz, yy, xx = np.mgrid[:D, :H, :W]
    hu = np.where((xx - 32) ** 2 + (yy - 30) ** 2 + ((zz - 4) * 4) ** 2 <= 12 ** 2, 40.0, -800.0)
    files = write_dicom_series(hu + 1024, str(tmp_path_factory.mktemp("ct")), spacing=(2.5, 0.8, 0.8), modality="CT",
                               patient_id="phantom1", series_description="sam2tune phantom CT",
                               extra={"RescaleIntercept": -1024})
    DICOMwebClient(orthanc).store_instances([pydicom.dcmread(f) for f in files])
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), files


@pytest.fixture(scope="module")
def app(orthanc, ct_series, server_control, tmp_path_factory):
    """(MONAILabelClient, url) of the app started with --studies <Orthanc DICOMweb URL>."""
    start_server, stop_server = server_control
    work = tmp_path_factory.mktemp("dicomweb_app")
    conf = {"models": MODEL, "image_size": 64, "sam2_variant": "tiny", "device": "cpu", "auto_update": "true",
            "update_steps": 150, "update_learning_rate": 1e-3}
    proc, url = start_server(orthanc, str(work / "model"), str(work / "server.log"), conf,
                             env={"MONAI_LABEL_DICOMWEB_CACHE_PATH": str(work / "cache")})
    yield MONAILabelClient(url, tmpdir=str(work / "client")), url, str(work / "server.log")
    stop_server(proc)


def test_infer_and_seg_write_back(app, orthanc, ct_series, tmp_path):
    client, url, log_path = app
    study_uid, series_uid, files = ct_series
    log = open(log_path).read()
    assert "SEG write-back: pydicom-seg, no dcmqi" in log and "github.com" not in log  # no dcmqi download at start
    stats = json.loads(urllib.request.urlopen(f"{url}/datastore/?output=stats").read())
    assert stats["total"] == 1  # the series, listed by QIDO-RS (Modality=CT)

    mask_file, params = client.infer(MODEL, series_uid, {"foreground": [[32, 30, 4]], "background": [[2, 2, 4]]})
    pred = nib.load(mask_file)
    assert pred.shape == (W, H, D)  # NIfTI I, J, K = column, row, slice of the series
    assert params["foreground_voxels"] == int(np.asarray(pred.dataobj).sum())
    assert params["label_names"] == {"lung_nodule": 1}

    # OHIF's panel asks for NRRD: same mask, in the series' own LPS geometry
    nrrd_file, _ = client.infer(MODEL, series_uid, {"foreground": [[32, 30, 4]], "background": [[2, 2, 4]],
                                                   "result_extension": ".nrrd"})
    nrrd, series_img = sitk.ReadImage(nrrd_file), sitk.ReadImage(files)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(nrrd), np.asarray(pred.dataobj).transpose(2, 1, 0))
    np.testing.assert_allclose(nrrd.GetOrigin(), series_img.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(nrrd.GetSpacing(), series_img.GetSpacing(), atol=1e-3)

    # A known label in the prediction's geometry (the random-init network's mask may be empty): slices 3..5, a square.
    label = np.zeros((W, H, D), np.uint8)
    label[24:40, 20:36, 3:6] = 1
    nib.save(nib.Nifti1Image(label, pred.affine), tmp_path / "label.nii.gz")
    client.save_label(series_uid, str(tmp_path / "label.nii.gz"), tag="final",
                      params={"label_names": {"lung_nodule": 1}, "model": MODEL})

    qido = DICOMwebClient(orthanc)
    segs = qido.search_for_series(study_uid, search_filters={"Modality": "SEG"})
    assert len(segs) == 1
    seg_series = pydicom.Dataset.from_json(segs[0]).SeriesInstanceUID
    seg = qido.retrieve_series(study_uid, seg_series)[0]
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == study_uid
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series_uid
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["lung_nodule"]
    seg_path = tmp_path / "seg.dcm"
    seg.save_as(seg_path)
    back, names = read_dicom_seg(str(seg_path), files)  # (D, H, W) in file order
    assert names == {1: "lung_nodule"}
    np.testing.assert_array_equal(back, label.transpose(2, 1, 0))

    # OHIF's data path: the server's DICOMweb proxy answers QIDO for the study, SEG included
    series = requests.get(f"{url}/proxy/dicom/qido/studies/{study_uid}/series", timeout=30).json()  # gzip-aware
    assert {s["00080060"]["Value"][0] for s in series} == {"CT", "SEG"}


def test_quick_update_from_a_dicomweb_label_and_output_dicom_seg(app, ct_series, tmp_path):
    """A final label saved on DICOMweb trains the served model (the label is read from the server's cached NIfTI, not
    re-downloaded as a SEG); then output=dicom_seg answers a pydicom-seg SEG equal to the NIfTI answer."""
    client, url, log_path = app
    study_uid, series_uid, files = ct_series
    truth = np.zeros((W, H, D), np.uint8)
    truth[22:42, 20:40, 2:7] = 1
    affine = nib.load(client.infer(MODEL, series_uid, {"foreground": [[32, 30, 4]], "reset": True})[0]).affine
    nib.save(nib.Nifti1Image(truth, affine), tmp_path / "truth.nii.gz")
    answer = client.save_label(series_uid, str(tmp_path / "truth.nii.gz"), tag="final",
                               params={"label_names": {"lung_nodule": 1}, "model": MODEL})
    status = quick_update_served(url, MODEL, answer["quick_update"][MODEL])
    last = status["quick_update"]["last"]
    assert "error" not in last and last["trained_on"] == [series_uid], status
    assert "not a DICOM-SEG" not in open(log_path).read()
    assert status["viewers"]["ohif"] is True

    request = {"foreground": [[32, 30, 4]], "reset": True}
    nifti, params = client.infer(MODEL, series_uid, request)
    assert params["weights"]["source"] == "quick update"
    mask = np.asarray(nib.load(nifti).dataobj)
    assert mask.sum() > 0, "the quick update on this very label must give a mask at its centre"
    r = requests.post(f"{url}/infer/{MODEL}", params={"image": series_uid, "output": "dicom_seg"},
                      data={"params": json.dumps(request)}, timeout=120)
    assert r.status_code == 200 and r.headers["content-type"] == "application/dicom", r.text[:300]
    (tmp_path / "answer.dcm").write_bytes(r.content)
    seg = pydicom.dcmread(tmp_path / "answer.dcm")
    assert seg.Modality == "SEG" and seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series_uid
    back, names = read_dicom_seg(str(tmp_path / "answer.dcm"), files)
    assert names == {1: "lung_nodule"}  # from the served model's labels (no label_info sent)
    np.testing.assert_array_equal(back, mask.transpose(2, 1, 0))


def test_bad_input_on_dicomweb(app, tmp_path):
    client = app[0]
    wrong = tmp_path / "wrong.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), wrong)
    with pytest.raises(MONAILabelClientException) as err:
        client.save_label("1.2.3.4.5", str(wrong), tag="final")
    assert "Status: 404" in str(err.value.msg)
    with pytest.raises(MONAILabelClientException) as err:
        client.infer(MODEL, "1.2.3.4.5", {"foreground": [[1, 1, 1]]})
    assert "Status: 404" in str(err.value.msg) and "not in the datastore" in str(err.value.msg)
    url = app[1]
    with open(wrong, "rb") as f:  # a SEG references a series of the datastore: an upload has none
        r = requests.post(f"{url}/infer/{MODEL}", params={"output": "dicom_seg"}, files={"file": ("x.nii.gz", f)},
                          data={"params": "{}"}, timeout=60)
    assert r.status_code == 400 and "image=<SeriesInstanceUID>" in r.json()["detail"], r.text
