"""abdomen_ct_sam2 on BTCV phantoms: train / evaluate / infer (NIfTI and DICOM) with SAM2 memory propagation."""

from __future__ import annotations

import csv
import json
import os
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from sam2tune.data.phantoms.btcv import write_btcv_phantoms
from sam2tune.io.dicom_series import write_dicom_series

BUNDLE = "abdomen_ct_sam2"


# The phantoms hold the five large organs (spleen, kidneys, liver, stomach): at 48 px and image_size 64 SAM2's masks
# are 16 x 16 logits, on which the 2-4 px adrenals, oesophagus or veins of a 13-organ phantom are below one cell.
ORGANS = [1, 2, 3, 6, 7]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    """5 phantoms: 3 train, 1 val (img0005: model selection), 1 labelled held-out test case (img0004: what
    evaluate.json scores), plus one test case whose label is on another grid (to be skipped).

    (Cases 1-4 are those of a 4-case phantom set of the same seed, on which the bounds below were measured.)
    """
    out = tmp_path_factory.mktemp("btcv")
    write_btcv_phantoms(str(out), cases=5, seed=0, size=48, depth=12, val_fraction=0.2, organs=ORGANS)
    img = nib.load(str(out / "img" / "img0004.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((48, 48, 6), np.uint8), img.affine), str(out / "label" / "label0099.nii.gz"))
    meta = json.loads((out / "dataset_0.json").read_text())
    entry = {i: {"image": f"img/img000{i}.nii.gz", "label": f"label/label000{i}.nii.gz"} for i in range(1, 6)}
    meta["training"], meta["validation"] = [entry[1], entry[2], entry[3]], [entry[5]]
    meta["test"] = [entry[4], {"image": "img/img0004.nii.gz", "label": "label/label0099.nii.gz"},
                    "imagesTs/img0061.nii.gz"]  # BTCV's own test images come unlabelled: not scored
    (out / "dataset_0.json").write_text(json.dumps(meta))
    return out


# The short fine-tune behind every test here, and the Done-when test: random init (no checkpoint offline), so the mask
# decoder trains with SAM2's memory modules (decoder_only + train_memory: 4x cheaper a step on CPU than full, and it
# learns as fast from random weights); lr 1e-3 held flat (t_total far beyond the run: a cosine decay over 15 steps
# would halve the mean lr); 3 volumes x 20 windows of 4 slices, batch 4 -> 15 optimizer steps. (8-slice windows,
# which run past organ ends and so also teach SAM2's object-score head "gone", tipped that head to "gone" on every
# tracked slice after 15 steps: mean Dice 0.109, nothing above or below the prompt. 4-slice windows propagate.)
# correction_rounds 0: each 3D round re-tracks the window, and the measured bounds below were set without rounds; the
# 3D rounds themselves are tested in tests/engines/test_volume_clicks.py.
TRAIN = {"max_epochs": 1, "window": 4, "windows_per_volume": 20, "learning_rate": 1e-3, "warmup_epochs": 0,
         "finetune": "decoder_only", "train#lr_scheduler#t_total": 10000, "correction_rounds": 0}


@pytest.fixture(scope="module")
def trained(phantoms, tmp_path_factory, bundle_tools):
    """One short training run (decoder + memory, 15 steps) shared by the tests below."""
    out = tmp_path_factory.mktemp("run")
    bundle_tools.run_workflow(BUNDLE, ["train"], dataset_dir=str(phantoms), output_dir=str(out),
                              ckpt_dir=str(out / "models"), **{**bundle_tools.TINY, **TRAIN})
    yield out
    shutil.rmtree(out, ignore_errors=True)  # checkpoints: free the disk once the module is done


@pytest.fixture(scope="module")
def evaluated(trained, phantoms, bundle_tools):
    """`run evaluating` of the trained model -> its eval folder."""
    bundle_tools.run_workflow(BUNDLE, ["train", "evaluate"], dataset_dir=str(phantoms), output_dir=str(trained),
                              ckpt_dir=str(trained / "models"), **bundle_tools.TINY)
    return trained / "eval"


def test_training_leaves_contract_files(trained):
    history = json.loads((trained / "training_history.json").read_text())
    assert [r["epoch"] for r in history] == [1]
    assert {"train_loss", "val_mean_dice", "val_mean_iou", "lr"} <= set(history[0])
    assert np.isfinite(history[0]["train_loss"])
    state = torch.load(trained / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert any(k.startswith("sam.memory_attention.") for k in state)
    assert any(k.startswith("sam.memory_encoder.") for k in state)


def test_evaluate_reports_whole_volumes_and_skips_bad_case(evaluated, phantoms):
    ev = evaluated
    summary = json.loads((ev / "summary.json").read_text())
    assert summary["n"] == 1 and summary["cases"] == ["img0004"] and summary["split"] == "test"  # held out, not val
    assert summary["mean_seconds_per_volume"] > 0 and 0.0 <= summary["global_dice"] <= 1.0
    assert len(summary["skipped"]) == 1 and "label0099" in summary["skipped"][0]["reason"]
    label = np.asarray(nib.load(str(phantoms / "label" / "label0004.nii.gz")).dataobj)
    rows = list(csv.DictReader(open(ev / "per_volume.csv")))
    # every organ of the labelled volume is scored (whole volume, not a fraction of it)
    assert {int(r["organ"]) for r in rows if int(r["label_voxels"])} == set(np.unique(label)) - {0}
    assert sum(int(r["label_voxels"]) for r in rows) == int((label > 0).sum())
    slices = list(csv.DictReader(open(ev / "per_slice.csv")))
    assert set(np.nonzero(label.any((0, 1)))[0]) <= {int(r["slice"]) for r in slices}  # every labelled slice scored
    assert (ev / "per_organ.csv").is_file() and len(os.listdir(ev / "qc")) >= 2


def test_inference_cli_on_nifti_writes_label_map_on_input_grid(trained, phantoms, tmp_path, bundle_tools):
    label = np.asarray(nib.load(str(phantoms / "label" / "label0004.nii.gz")).dataobj).transpose(2, 1, 0)  # (D, H, W)
    k = int(np.argmax((label == 6).sum((1, 2))))
    ys, xs = np.nonzero(label[k] == 6)
    prompts = {"liver": {"slice": k, "box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]},
               "8": {"slice": 6, "points": [[24, 30]]}}
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    bundle_tools.run_cli(["-m", "monai.bundle", "run", "inferring", "--config_file",
                          bundle_tools.config_path(BUNDLE, "inference"), "--input_path",
                          str(phantoms / "img" / "img0004.nii.gz"), "--output_dir", str(tmp_path / "out"),
                          "--prompts_file", str(tmp_path / "prompts.json"), "--ckpt_dir", str(trained / "models"),
                          "--image_size", "64", "--save_npy", "true"])
    seg = nib.load(str(tmp_path / "out" / "img0004_seg.nii.gz"))
    ref = nib.load(str(phantoms / "img" / "img0004.nii.gz"))
    assert seg.shape == ref.shape and np.allclose(seg.affine, ref.affine)
    assert set(np.unique(np.asarray(seg.dataobj))) <= {0, 6, 8}
    assert len(os.listdir(tmp_path / "out" / "img0004_npy")) == 12


def test_inference_on_dicom_series_writes_dicom_seg(trained, phantoms, tmp_path, bundle_tools):
    from sam2tune.io.dicom_seg import read_dicom_seg

    ct = np.asarray(nib.load(str(phantoms / "img" / "img0004.nii.gz")).dataobj).transpose(2, 1, 0)
    label = np.asarray(nib.load(str(phantoms / "label" / "label0004.nii.gz")).dataobj).transpose(2, 1, 0)
    files = write_dicom_series(ct + 1024.0, str(tmp_path / "dcm"), spacing=(5.0, 0.8, 0.8), modality="CT",
                               extra={"RescaleIntercept": -1024, "RescaleSlope": 1})
    k = int(np.argmax((label == 1).sum((1, 2))))
    np.save(tmp_path / "spleen.npy", (label[k] == 1).astype(np.uint8))
    (tmp_path / "prompts.json").write_text(json.dumps({"spleen": {"slice": k, "mask": "spleen.npy"}}))
    wf = bundle_tools.run_workflow(BUNDLE, ["inference"], run_id="inferring", input_path=str(tmp_path / "dcm"),
                                   prompts_file=str(tmp_path / "prompts.json"), output_dir=str(tmp_path / "out"),
                                   ckpt_dir=str(trained / "models"), image_size=64, device="cpu", amp=False)
    assert wf is not None
    seg_map, names = read_dicom_seg(str(tmp_path / "out" / "dcm_seg.dcm"), files)
    assert names == {1: "spleen"} and seg_map.shape == ct.shape
    # the mask prompt is the key slice's prediction (up to SAM2's low-res mask grid at image_size 64)
    pred, truth = seg_map[k] > 0, label[k] == 1
    assert 2 * (pred & truth).sum() / (pred.sum() + truth.sum()) > 0.8


def test_bad_prompts_name_the_fix(tmp_path):
    from sam2tune.inference import read_prompts

    with pytest.raises(ValueError, match="Unknown organ 'heart'"):
        read_prompts({"heart": {"slice": 1, "box": [0, 0, 4, 4]}}, depth=10)
    with pytest.raises(ValueError, match="slice 10, outside the volume \\(slices 0..9\\)"):
        read_prompts({"liver": {"slice": 10, "box": [0, 0, 4, 4]}}, depth=10)
    ids, prompts = read_prompts({"6": [{"slice": 2, "box": [0, 0, 4, 4]}, {"slice": 5, "points": [[1, 2]]}]}, depth=10)
    assert ids == [6] and [p.slice for p in prompts[0]] == [2, 5] and prompts[0][1].point_labels == [1]


def test_single_middle_prompt_propagates_both_ways_and_beats_untrained(evaluated, phantoms, tmp_path, bundle_tools):
    """Issue 3, Done when: from one prompted middle slice per organ, predictions reach slices above and below the
    prompt, and the short fine-tune's mean Dice is far above the same evaluation of the untrained network."""
    from sam2tune.networks import SAM2Segmenter
    from sam2tune.utils import atomic_torch_save

    torch.manual_seed(0)  # the untrained reference is one fixed random init
    atomic_torch_save(SAM2Segmenter("tiny", 64, in_channels=1).state_dict(), str(tmp_path / "models" / "model.pt"))
    bundle_tools.run_workflow(BUNDLE, ["train", "evaluate"], dataset_dir=str(phantoms), output_dir=str(tmp_path),
                              ckpt_dir=str(tmp_path / "models"), **bundle_tools.TINY)
    untrained = json.loads((tmp_path / "eval" / "summary.json").read_text())["mean_dice"]
    trained = json.loads((evaluated / "summary.json").read_text())["mean_dice"]
    label = np.asarray(nib.load(str(phantoms / "label" / "label0004.nii.gz")).dataobj).transpose(2, 1, 0)  # (D, H, W)
    rows = list(csv.DictReader(open(evaluated / "per_slice.csv")))
    reach = {}
    for organ in ORGANS:
        ks = np.nonzero((label == organ).any((1, 2)))[0]
        key = int((ks[0] + ks[-1]) // 2)  # VolumePromptPrepareBatch's "middle" key slice
        hits = [
            int(r["slice"]) for r in rows if int(r["organ"]) == organ and int(r["pred_voxels"]) and float(r["dice"]) > 0
        ]
        reach[organ] = (key, hits)  # slices where the prediction overlaps the organ
    print("Done-when:", {"trained": trained, "untrained": untrained, "reach": reach})
    # Measured (2026-11-30, idle 2-core CPU, training 13 s): trained mean Dice 0.176 vs untrained 0.034; the prediction
    # overlapped the organ above and below its key slice for 4 of the 5 organs (stomach lost). (60 steps with cosine
    # decay: 0.222, both ways for 3 organs; 60 flat: 0.132.) The bounds sit below those with margin; they are what a
    # short CPU run clears, NOT the issue's "far above": at image_size 64 SAM2's memory sits on 4 x 4 tokens and, from
    # random weights, memory attention does not learn to tell the small organs apart (1,600 steps: mean 0.612); at 128
    # px it does: test_long_fine_tune_reaches_both_ends_of_every_organ below asserts the full Done-when (opt-in on CPU).
    both_ways = [o for o, (key, hits) in reach.items() if hits and min(hits) < key < max(hits)]
    assert len(both_ways) >= len(ORGANS) - 2, reach
    assert trained >= 0.12 and trained >= untrained + 0.08, (trained, untrained)


# The Done-when at a size where SAM2's memory can tell the organs apart from random weights: the seed study's "long"
# setting (sam2tune.tools.seed_study: image_size 128, 10 train volumes, 800 steps). About 30 min a seed on 2 CPU cores,
# so opt-in there; on CUDA it runs by default. The README's seed table comes from the same setting over several seeds.
LONG = os.environ.get("SAM2TUNE_LONG_TESTS", "0") not in ("", "0") or torch.cuda.is_available()


@pytest.mark.skipif(
    not LONG, reason="about 30 min on 2 CPU cores: set SAM2TUNE_LONG_TESTS=1 to run it (runs by default on CUDA)"
)
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("seed", [int(s) for s in os.environ.get("SAM2TUNE_LONG_SEEDS", "0").split(",")])
def test_long_fine_tune_reaches_both_ends_of_every_organ(tmp_path, seed):
    """Issue 3, Done when, in full: after an 800-step fine-tune from random weights, every organ of every validation
    volume, prompted once on its middle slice, is found above and below that slice, and mean Dice is far above the
    same evaluation of the untrained network (SAM2TUNE_LONG_SEEDS=0,1,2 runs several seeds)."""
    from sam2tune.tools.seed_study import run_seed

    r = run_seed("long", seed, str(tmp_path))
    print("Done-when (long):", {k: v for k, v in r.items() if k != "history"})
    assert r["organ_volumes"] == 2 * len(ORGANS) and all(r["reach"].values()), r["reach"]
    assert r["mean_dice"] >= 0.7 and r["mean_dice"] >= r["untrained"] + 0.5, (r["mean_dice"], r["untrained"])


def test_guard_three_d_training_learns(tmp_path):
    """Issue 20, item 4: the seed study's "guard" setting (64 px, 5 train volumes, 40 steps, ~1.5 min) must learn, so
    that a change that breaks 3D learning fails CI. Bounds below the minimum over seeds 0-4 on commit dd85d8e
    (`python scripts/seed_study.py --setting guard --seeds 0,1,2,3,4 --out /tmp/guard`): mean Dice 0.137-0.197
    (untrained 0.020-0.048, trained - untrained >= 0.089), organ-volumes reached both ways 7-10 of 10."""
    from sam2tune.tools.seed_study import run_seed

    r = run_seed("guard", 0, str(tmp_path))
    print("guard:", {k: v for k, v in r.items() if k not in ("history", "reach")})
    assert r["mean_dice"] >= 0.10 and r["mean_dice"] >= r["untrained"] + 0.06, (r["mean_dice"], r["untrained"])
    assert r["reached_both_ways"] >= 6, r["reach"]


def test_deterministic_run_repeats_bit_for_bit(phantoms, tmp_path, bundle_tools):
    """Issue 20, item 5: with `deterministic true` two runs of the same seed end with the same weights to the bit and
    the same loss history; another seed does not (so the comparison can fail). Same machine only: BLAS / oneDNN
    kernels differ across CPUs and GPUs (see the README)."""
    short = {**bundle_tools.TINY, **TRAIN, "windows_per_volume": 4, "deterministic": True}  # 3 steps

    def run(name: str, seed: int) -> tuple[dict, list]:
        out = tmp_path / name
        bundle_tools.run_workflow(BUNDLE, ["train"], dataset_dir=str(phantoms), output_dir=str(out),
                                  ckpt_dir=str(out / "models"), seed=seed, **short)
        weights = torch.load(out / "models" / "model.pt", map_location="cpu", weights_only=True)
        history = json.loads((out / "training_history.json").read_text())
        return weights, [(h["iteration"], h["train_loss"]) for h in history]

    first, again, other = run("a", 3), run("b", 3), run("c", 4)
    assert first[1] == again[1] and first[1][-1][0] == 3, (first[1], again[1])
    assert first[0].keys() == again[0].keys()
    assert all(torch.equal(first[0][k], again[0][k]) for k in first[0]), [
        k for k in first[0] if not torch.equal(first[0][k], again[0][k])]
    assert first[1] != other[1] and any(not torch.equal(first[0][k], other[0][k]) for k in first[0])


def test_torchrun_two_processes_gloo(tmp_path, bundle_tools):
    """The contract's torchrun command with multi_gpu_train.json: 2 CPU processes (gloo), one tiny epoch,
    rank-0 files."""
    import shutil
    import subprocess
    import sys

    data = tmp_path / "btcv"
    write_btcv_phantoms(str(data), cases=4, seed=1, size=48, depth=8, val_fraction=0.5, organs=ORGANS)  # 2 train, 2 val
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    files = f"['{bundle_tools.config_path(BUNDLE, 'train')}','{bundle_tools.config_path(BUNDLE, 'multi_gpu_train')}']"
    proc = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "-m", "monai.bundle", "run", "training", "--config_file", files,
         "--dataset_dir", str(data), "--output_dir", str(tmp_path / "out"), "--ckpt_dir", str(tmp_path / "m"),
         "--max_epochs", "1", "--image_size", "64", "--num_workers", "0", "--batch_size", "1", "--window", "3",
         "--windows_per_volume", "1", "--amp", "false"],
        cwd=bundle_tools.REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    history = json.loads((tmp_path / "out" / "training_history.json").read_text())
    assert len(history) == 1 and np.isfinite(history[0]["train_loss"])  # written once, by rank 0
    state = torch.load(tmp_path / "m" / "model.pt", map_location="cpu", weights_only=True)
    assert not any(k.startswith("module.") for k in state), "model.pt must be the unwrapped network"


def test_click_protocol_corrects_the_worst_slice_and_repropagates(trained, phantoms, bundle_tools):
    """evaluate_interactive on whole volumes: one curve per organ-volume; the files of the click protocol."""
    bundle_tools.run_workflow(BUNDLE, ["train", "evaluate", "evaluate_interactive"], dataset_dir=str(phantoms),
                              output_dir=str(trained), ckpt_dir=str(trained / "models"), max_clicks=2,
                              **bundle_tools.TINY)
    out = trained / "eval_interactive"
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["dice_at_clicks"]) == 3 and summary["objects"] >= 3
    rows = (out / "per_object_clicks.csv").read_text().splitlines()
    assert len(rows) == summary["objects"] + 1 and all("/" in r.split(",")[0] for r in rows[1:])
    assert (out / "clicks_curve.png").is_file()
