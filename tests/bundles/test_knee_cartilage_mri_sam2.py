"""knee_cartilage_mri_sam2 on knee phantoms: train, evaluate (biomarkers + DICOM SEG), infer, bad subjects."""

from __future__ import annotations

import csv
import glob
import json
import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch

from sam2tune.data.phantoms.knee import write_knee_phantoms
from sam2tune.io.dicom_seg import read_dicom_seg

BUNDLE = "knee_cartilage_mri_sam2"


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    out = tmp_path_factory.mktemp("knee")
    write_knee_phantoms(str(out), cases=4, seed=0, size=48, slices=5, spacing=(3.0, 0.8, 0.8))
    return str(out)


@pytest.fixture(scope="module")
def trained(phantoms, tmp_path_factory, bundle_tools):
    """One short full fine-tune, then evaluate, shared by the tests below."""
    out = tmp_path_factory.mktemp("run")
    common = dict(dataset_dir=phantoms, output_dir=str(out), ckpt_dir=str(out / "models"), **bundle_tools.TINY)
    bundle_tools.run_workflow(BUNDLE, ["train"], max_epochs=1, finetune="full", learning_rate=1e-3, **common)
    bundle_tools.run_workflow(BUNDLE, ["train", "evaluate"], **common)
    return out


def test_training_leaves_contract_files(trained):
    history = json.loads((trained / "training_history.json").read_text())
    assert [r["epoch"] for r in history] == [1]
    assert {"train_loss", "val_mean_dice", "lr"} <= set(history[0])
    state = torch.load(trained / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert any("image_encoder" in k for k in state)


def test_evaluate_writes_biomarkers_and_seg(trained, phantoms):
    ev = trained / "eval"
    summary = json.loads((ev / "summary.json").read_text())
    tissues = {"femoral_cartilage", "tibial_cartilage", "patellar_cartilage"}
    assert set(summary["biomarkers"]) == tissues and summary["skipped_subjects"] == []
    assert {"thickness_mean_mm", "thickness_p95_mm", "volume_mm3", "height_mm", "t1rho_ms_mean", "t2_ms_median"} <= set(
        summary["biomarkers"]["femoral_cartilage"])
    with open(ev / "biomarkers_per_subject.csv") as fh:
        rows = list(csv.DictReader(fh))
    (subject,) = {r["subject"] for r in rows}  # one test subject
    truth = json.load(open(f"{phantoms}/truth.json"))["subjects"][subject]
    for r in rows:
        assert float(r["difference"]) == pytest.approx(float(r["prediction"]) - float(r["ground_truth"]), abs=1e-6)
        if r["biomarker"] == "t1rho_ms_median":  # ground-truth side recovers the constructed map value
            assert float(r["ground_truth"]) == pytest.approx(truth[r["tissue"]]["t1rho_ms"], abs=0.5)
    assert set(summary["volume_dice"]) == tissues
    seg_path = ev / "seg" / f"{subject}.dcm"
    seg = pydicom.dcmread(seg_path)
    assert seg.Modality == "SEG"
    refs = sorted(glob.glob(f"{phantoms}/{subject}/image/*.dcm"))
    back, _ = read_dicom_seg(str(seg_path), refs)
    assert back.shape == (5, 48, 48) and back.max() <= 3


def test_inference_cli_skips_subject_with_missing_tissue(trained, phantoms, tmp_path, bundle_tools):
    data = tmp_path / "knee"
    shutil.copytree(phantoms, data)
    img = sitk.ReadImage(str(data / "knee_004" / "label.nii.gz"))
    arr = sitk.GetArrayFromImage(img)
    arr[arr == 3] = 0  # knee_004 has no patellar cartilage in its label
    fixed = sitk.GetImageFromArray(arr)
    fixed.CopyInformation(img)
    sitk.WriteImage(fixed, str(data / "knee_004" / "label.nii.gz"))
    out = tmp_path / "pred"
    bundle_tools.run_cli(["-m", "monai.bundle", "run", "inferring", "--config_file", bundle_tools.config_path(BUNDLE, "inference"),
                          "--input_path", str(data), "--output_dir", str(out), "--ckpt_dir", str(trained / "models"),
                          "--image_size", "64"])
    summary = json.loads((out / "summary.json").read_text())
    assert [s["subject"] for s in summary["skipped_subjects"]] == ["knee_004"]
    assert "label tissue 3 (patellar_cartilage): no voxels" in summary["skipped_subjects"][0]["error"]
    assert sorted(p.name for p in (out / "seg").iterdir()) == ["knee_001.dcm", "knee_002.dcm", "knee_003.dcm"]
    assert np.isfinite(summary["biomarkers"]["femoral_cartilage"]["volume_mm3"]["mean_ground_truth"])


def test_bad_dataset_dir_names_the_fix(tmp_path, bundle_tools):
    with pytest.raises(Exception) as err:
        bundle_tools.run_workflow(BUNDLE, ["train"], dataset_dir=str(tmp_path / "nowhere"), output_dir=str(tmp_path),
                                  **bundle_tools.TINY)
    assert "make_phantoms.py knee" in bundle_tools.error_chain(err.value)
