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
    yield out
    shutil.rmtree(out, ignore_errors=True)  # checkpoints: free the disk once the module is done


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
    bundle_tools.run_cli(["-m", "monai.bundle", "run", "inferring", "--config_file",
                          bundle_tools.config_path(BUNDLE, "inference"), "--input_path", str(data), "--output_dir",
                          str(out), "--ckpt_dir", str(trained / "models"), "--image_size", "64"])
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


def _unlabelled_subject(phantoms, tmp_path, subject="knee_001"):
    """A copy of one phantom subject without its label (what a new patient looks like) + its truth label array."""
    src = f"{phantoms}/{subject}"
    dst = tmp_path / subject
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("label*"))
    assert not list(dst.glob("label*"))
    return dst, sitk.GetArrayFromImage(sitk.ReadImage(f"{src}/label.nii.gz"))


def _box(mask):
    rows, cols = np.nonzero(mask)
    return [int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())]  # x = column, y = row


def test_label_free_inference_with_prompts(trained, phantoms, tmp_path, bundle_tools):
    subject, truth = _unlabelled_subject(phantoms, tmp_path)
    prompts = {
        "femoral_cartilage": [{"slice": 1, "box": _box(truth[1] == 1)}, {"slice": 3, "box": _box(truth[3] == 1)}],
        "2": {"slice": 2, "box": _box(truth[2] == 2)},
        "patellar_cartilage": {
            "slice": 2,
            "points": [[int(c) for c in np.argwhere(truth[2] == 3)[0][::-1]]],
            "point_labels": [1],
        },
    }
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    out = tmp_path / "pred"
    bundle_tools.run_cli(["-m", "monai.bundle", "run", "inferring", "--config_file",
                          bundle_tools.config_path(BUNDLE, "inference"), "--input_path", str(subject), "--prompts",
                          str(tmp_path / "prompts.json"), "--output_dir", str(out), "--ckpt_dir",
                          str(trained / "models"), "--image_size", "64", "--amp", "false"])
    result = json.loads((out / "knee_001_result.json").read_text())
    assert result["mode"] == "prompts" and set(result["tissues"]) == {
        "femoral_cartilage",
        "tibial_cartilage",
        "patellar_cartilage",
    }
    pred_img = sitk.ReadImage(str(out / "knee_001_seg.nii.gz"))
    ref = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(f"{subject}/image"))
    assert pred_img.GetSize() == ref.GetSize()
    assert np.allclose(pred_img.GetSpacing(), ref.GetSpacing()) and np.allclose(pred_img.GetOrigin(), ref.GetOrigin())
    pred = sitk.GetArrayFromImage(pred_img)
    assert not pred[[0, 4]].any()  # only prompted slices are segmented in "prompts" mode
    assert set(np.unique(pred[[1, 3]])) <= {0, 1} and set(np.unique(pred[2])) <= {0, 2, 3}
    assert sum(result["tissues"].values()) == int((pred > 0).sum())
    # biomarkers of the prediction only (no ground truth columns), maps next to the image were used
    with open(out / "knee_001_biomarkers.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert set(rows[0]) == {"subject", "tissue", "biomarker", "prediction"}
    femoral = {r["biomarker"]: float(r["prediction"]) for r in rows if r["tissue"] == "femoral_cartilage"}
    assert {"volume_mm3", "thickness_mean_mm", "t1rho_ms_median", "t2_ms_mean"} <= set(femoral)
    assert femoral["volume_mm3"] == pytest.approx((pred == 1).sum() * 3.0 * 0.8 * 0.8, rel=1e-4)
    if (pred == 1).any():  # the SEG holds what was predicted, on the subject's DICOM series
        back, _ = read_dicom_seg(result["dicom_seg"], sorted(glob.glob(f"{subject}/image/*.dcm")))
        assert back.shape == pred.shape and ((back > 0) == (pred > 0)).all()


def test_label_free_prompt_free_on_nifti(trained, phantoms, tmp_path, bundle_tools):
    subject, _ = _unlabelled_subject(phantoms, tmp_path, "knee_002")
    image = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(f"{subject}/image"))
    sitk.WriteImage(image, str(tmp_path / "knee_002.nii.gz"))
    out = tmp_path / "pred"
    bundle_tools.run_workflow(BUNDLE, ["inference"], run_id="inferring", input_path=str(tmp_path / "knee_002.nii.gz"),
                              prompt_free="true", output_dir=str(out), ckpt_dir=str(trained / "models"), image_size=64,
                              amp="false", device="cpu")
    result = json.loads((out / "knee_002_result.json").read_text())
    assert result["mode"] == "prompt_free" and set(result["tissues"]) == {"cartilage"} and result["dicom_seg"] is None
    pred = sitk.ReadImage(str(out / "knee_002_seg.nii.gz"))
    assert pred.GetSize() == image.GetSize() and np.allclose(pred.GetSpacing(), image.GetSpacing())
    assert set(np.unique(sitk.GetArrayFromImage(pred))) <= {0, 1}
    with open(out / "knee_002_biomarkers.csv") as fh:
        biomarkers = {r["biomarker"] for r in csv.DictReader(fh)}
    assert "volume_mm3" in biomarkers and not any(b.startswith(("t1rho", "t2")) for b in biomarkers)  # no maps given


def test_label_free_propagate_reaches_unprompted_slices(trained, phantoms, tmp_path, bundle_tools):
    subject, truth = _unlabelled_subject(phantoms, tmp_path, "knee_003")
    out = tmp_path / "pred"
    prompts = {"femoral_cartilage": {"slice": 2, "box": _box(truth[2] == 1)}}
    (tmp_path / "p.json").write_text(json.dumps(prompts))
    bundle_tools.run_workflow(BUNDLE, ["inference"], run_id="inferring", input_path=str(subject),
                              prompts=str(tmp_path / "p.json"), propagate="True", dicom_seg="false",
                              output_dir=str(out), ckpt_dir=str(trained / "models"), image_size=64, amp="False",
                              device="cpu")
    result = json.loads((out / "knee_003_result.json").read_text())
    assert result["mode"] == "propagate" and result["dicom_seg"] is None  # dicom_seg "false" honoured
    pred = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "knee_003_seg.nii.gz")))
    assert pred.shape == truth.shape and set(np.unique(pred)) <= {0, 1}
    assert result["tissues"]["femoral_cartilage"] == int((pred == 1).sum())
    # SAM2's memory carried the one prompt to slices that had none ("prompts" mode leaves them empty, see above):
    # on an unprompted slice that holds femoral cartilage, the prediction overlaps it
    unprompted = [k for k in range(pred.shape[0]) if k != 2 and (truth[k] == 1).any()]
    overlap = {k: int(((pred[k] == 1) & (truth[k] == 1)).sum()) for k in unprompted}
    print("propagated overlap per unprompted slice:", overlap, {k: int((pred[k] == 1).sum()) for k in unprompted})
    assert unprompted and any(v > 0 for v in overlap.values()), overlap


def test_label_free_bad_prompts_name_the_problem(trained, phantoms, tmp_path, bundle_tools):
    subject, _ = _unlabelled_subject(phantoms, tmp_path)
    common = dict(run_id="inferring", input_path=str(subject), output_dir=str(tmp_path / "pred"),
                  ckpt_dir=str(trained / "models"), image_size=64, amp=False, device="cpu")
    for prompts, message in (
        (
            {"meniscus": {"slice": 1, "box": [1, 1, 5, 5]}},
            "Unknown tissue 'meniscus': this bundle knows 1 femoral_cartilage",
        ),
        (
            {"femoral_cartilage": {"slice": 7, "box": [1, 1, 5, 5]}},
            "tissue 'femoral_cartilage' is prompted on slice 7, outside the volume (slices 0..4)",
        ),
    ):
        path = tmp_path / "prompts.json"
        path.write_text(json.dumps(prompts))
        with pytest.raises(Exception) as err:
            bundle_tools.run_workflow(BUNDLE, ["inference"], prompts=str(path), **common)
        assert message in bundle_tools.error_chain(err.value)
    with pytest.raises(Exception) as err:
        bundle_tools.run_workflow(BUNDLE, ["inference"], prompts=str(path), prompt_free=True, **common)
    assert "not both" in bundle_tools.error_chain(err.value)


def test_click_protocol_writes_its_files(trained, phantoms, bundle_tools):
    """The click protocol on the knee test slices: one curve per prompted tissue instance."""
    bundle_tools.run_workflow(BUNDLE, ["train", "evaluate", "evaluate_interactive"], dataset_dir=phantoms,
                              output_dir=str(trained), ckpt_dir=str(trained / "models"), max_clicks=5,
                              **bundle_tools.TINY)
    out = trained / "eval_interactive"
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["dice_at_clicks"]) == 6 and summary["objects"] >= 2
    assert (out / "per_object_clicks.csv").read_text().count("\n") == summary["objects"] + 1
    assert (out / "clicks_curve.png").is_file()
