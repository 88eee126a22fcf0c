"""optic_cup_fundus_sam2 on REFUGE phantoms: the contract commands, outputs, resume and bad input."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from sam2tune.data.phantoms.refuge import write_refuge_phantoms

BUNDLE = "optic_cup_fundus_sam2"


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    out = tmp_path_factory.mktemp("refuge")
    write_refuge_phantoms(str(out), cases=12, seed=0, size=96)
    return str(out)


@pytest.fixture(scope="module")
def trained(phantoms, tmp_path_factory, bundle_tools):
    """One short LoRA training run shared by the tests below."""
    out = tmp_path_factory.mktemp("run")
    bundle_tools.run_workflow(BUNDLE, ["train"], dataset_dir=phantoms, output_dir=str(out),
                              ckpt_dir=str(out / "models"), max_epochs=2, finetune="lora", learning_rate=1e-3,
                              **bundle_tools.TINY)
    yield out
    shutil.rmtree(out, ignore_errors=True)  # checkpoints: free the disk once the module is done


def test_training_leaves_contract_files(trained):
    history = json.loads((trained / "training_history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    assert all({"train_loss", "val_mean_dice", "val_mean_iou", "lr"} <= set(r) for r in history)
    assert (trained / "training_curves.png").stat().st_size > 1000
    state = torch.load(trained / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert not any("lora_" in k or "base_layer" in k for k in state), "model.pt must hold LoRA merged into the base"
    adapter = trained / "models" / "adapter"
    assert (adapter / "adapter_config.json").is_file()
    size = sum(f.stat().st_size for f in adapter.iterdir())
    assert size < 0.1 * (trained / "models" / "model.pt").stat().st_size


def test_resume_continues_from_checkpoint(trained, phantoms, bundle_tools):
    """A second run with more epochs resumes at epoch 3 instead of starting again."""
    bundle_tools.run_workflow(BUNDLE, ["train"], dataset_dir=phantoms, output_dir=str(trained),
                              ckpt_dir=str(trained / "models"), max_epochs=3, finetune="lora", learning_rate=1e-3,
                              **bundle_tools.TINY)
    history = json.loads((trained / "training_history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[2]["iteration"] == 3 * history[0]["iteration"]


def test_resume_string_false_does_not_resume(trained, phantoms, tmp_path, bundle_tools):
    """`resume` given as the string "false" (what `--resume false` hands over) starts over next to a checkpoint."""
    models = tmp_path / "models"
    shutil.copytree(trained / "models", models, ignore=shutil.ignore_patterns("model.pt", "adapter"))
    (old,) = [p.name for p in models.glob("checkpoint_*.pt")]  # the 3-epoch run's; resuming it at max_epochs 1 fails
    bundle_tools.run_workflow(BUNDLE, ["train"], dataset_dir=phantoms, output_dir=str(tmp_path), ckpt_dir=str(models),
                              max_epochs=1, finetune="lora", learning_rate=1e-3, resume="false", **bundle_tools.TINY)
    history = json.loads((tmp_path / "training_history.json").read_text())
    assert [r["epoch"] for r in history] == [1] and history[0]["iteration"] * 3 == int(old[len("checkpoint_"):-3])
    assert [p.name for p in models.glob("checkpoint_*.pt")] == [f"checkpoint_{history[0]['iteration']}.pt"]


def test_evaluate_writes_report(trained, phantoms, bundle_tools):
    import csv

    bundle_tools.run_workflow(BUNDLE, ["train", "evaluate"], dataset_dir=phantoms, output_dir=str(trained),
                 ckpt_dir=str(trained / "models"), **bundle_tools.TINY)
    summary = json.loads((trained / "eval" / "summary.json").read_text())
    rows = list(csv.DictReader(open(trained / "eval" / "per_image.csv")))
    assert summary["n"] >= 2 and len(rows) == summary["n"]
    # the summary is the mean of the per-image scores it reports (IoU <= Dice on every image)
    dice = [float(r["dice"]) for r in rows if r["dice"] not in ("", "nan")]
    assert dice and summary["mean_dice"] == pytest.approx(float(np.mean(dice)), abs=1e-6)
    assert all(float(r["iou"]) <= float(r["dice"]) + 1e-6 for r in rows if r["dice"] not in ("", "nan"))
    assert len(os.listdir(trained / "eval" / "qc")) >= 2
    # Not asserted: trained beats untrained. Measured 2026-12-01 (this fixture: LoRA on a random init, 3 epochs at
    # 64 px): mean Dice 0.0989 trained vs 0.0984 for a fixed random init; LoRA on random weights learns nothing
    # in so few steps, so a margin would need a longer (decoder_only / full) run than this shared fixture.


def test_inference_cli_on_real_fundus_photo(trained, tmp_path, bundle_tools):
    """`run inferring` verbatim on scikit-image's real 1411x1411 retina photo, prompt-free and with a box."""
    import skimage
    from PIL import Image

    photo = os.path.join(os.path.dirname(skimage.__file__), "data", "retina.jpg")
    out = tmp_path / "masks"
    bundle_tools.run_cli(["-m", "monai.bundle", "run", "inferring", "--config_file",
                          bundle_tools.config_path(BUNDLE, "inference"), "--input_path", photo, "--output_dir",
                          str(out), "--ckpt_dir", str(trained / "models"), "--image_size", "64", "--box",
                          "[500,500,900,900]"])
    mask = Image.open(out / "retina_mask.png")
    assert mask.size == (1411, 1411)
    # prompt-free (no --box: the learned prompt token), the same workflow in-process
    free = tmp_path / "free"
    bundle_tools.run_workflow(BUNDLE, ["inference"], run_id="inferring", input_path=photo, output_dir=str(free),
                              ckpt_dir=str(trained / "models"), image_size=64, amp=False, device="cpu")
    free_mask = np.asarray(Image.open(free / "retina_mask.png"))
    assert free_mask.shape == (1411, 1411) and set(np.unique(free_mask)) <= {0, 255}


def test_bad_dataset_dir_names_the_fix(tmp_path, bundle_tools):
    with pytest.raises(Exception) as err:
        bundle_tools.run_workflow(
            BUNDLE, ["train"], dataset_dir=str(tmp_path / "nowhere"), output_dir=str(tmp_path), **bundle_tools.TINY
        )
    message = bundle_tools.error_chain(err.value)
    assert "nowhere" in message and "make_phantoms.py refuge" in message


def test_unknown_finetune_names_the_key(phantoms, tmp_path, bundle_tools):
    with pytest.raises(Exception) as err:
        bundle_tools.run_workflow(
            BUNDLE, ["train"], dataset_dir=phantoms, output_dir=str(tmp_path), finetune="sideways", **bundle_tools.TINY
        )
    message = bundle_tools.error_chain(err.value)
    assert "sideways" in message and "finetune" in message and "lora" in message


def test_training_cli_verbatim(phantoms, tmp_path, bundle_tools):
    """`python -m monai.bundle run training --config_file ...` with --key value overrides, as users type it."""
    bundle_tools.run_cli(["-m", "monai.bundle", "run", "training", "--config_file",
                          bundle_tools.config_path(BUNDLE, "train"), "--dataset_dir", phantoms, "--output_dir",
                          str(tmp_path), "--ckpt_dir", str(tmp_path / "m"), "--finetune", "decoder_only",
                          "--max_epochs", "1", "--image_size", "64", "--num_workers", "0", "--batch_size", "4"])
    assert (tmp_path / "m" / "model.pt").is_file()


def test_torchrun_two_processes_gloo(phantoms, tmp_path, bundle_tools):
    """The contract's torchrun command with multi_gpu_train.json: 2 CPU processes (gloo), one tiny epoch,
    rank-0 files."""
    import shutil
    import sys

    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    files = f"['{bundle_tools.config_path(BUNDLE, 'train')}','{bundle_tools.config_path(BUNDLE, 'multi_gpu_train')}']"
    proc = __import__("subprocess").run(
        [torchrun, "--nproc_per_node", "2", "-m", "monai.bundle", "run", "training", "--config_file", files,
         "--dataset_dir", phantoms, "--output_dir", str(tmp_path), "--ckpt_dir", str(tmp_path / "m"),
         "--max_epochs", "1", "--image_size", "64", "--num_workers", "0", "--batch_size", "2"],
        cwd=bundle_tools.REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    history = json.loads((tmp_path / "training_history.json").read_text())
    assert len(history) == 1  # written once, by rank 0
    state = torch.load(tmp_path / "m" / "model.pt", map_location="cpu", weights_only=True)
    assert not any(k.startswith("module.") for k in state), "model.pt must be the unwrapped network"


def test_click_protocol_writes_its_files(trained, phantoms, bundle_tools):
    """train + evaluate + evaluate_interactive: summary.json with the click fields, per-object CSV, curve PNG."""
    import csv

    bundle_tools.run_workflow(BUNDLE, ["train", "evaluate", "evaluate_interactive"], dataset_dir=phantoms,
                              output_dir=str(trained), ckpt_dir=str(trained / "models"), max_clicks=5,
                              **bundle_tools.TINY)
    out = trained / "eval_interactive"
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["dice_at_clicks"]) == len(summary["iou_at_clicks"]) == 6
    assert {"noc_85", "noc_90", "nof_85", "nof_90"} <= set(summary) and summary["user"] == "oracle"
    rows = list(csv.DictReader(open(out / "per_object_clicks.csv")))
    assert len(rows) == summary["objects"] >= 2
    # the summary's curve is the mean of the per-object curves it lists
    assert summary["dice_at_clicks"][5] == pytest.approx(np.mean([float(r["dice_5"]) for r in rows]), abs=1e-4)
    assert 0 <= summary["noc_90"] <= 5 and summary["nof_90"] <= summary["objects"]
    assert (out / "clicks_curve.png").stat().st_size > 1000


def test_bad_correction_rounds_is_refused_naming_the_key(phantoms, tmp_path, bundle_tools):
    with pytest.raises(Exception) as err:
        bundle_tools.run_workflow(BUNDLE, ["train"], dataset_dir=phantoms, output_dir=str(tmp_path),
                                  ckpt_dir=str(tmp_path), max_epochs=1,
                                  **{**bundle_tools.TINY, "correction_rounds": "many"})
    assert "correction_rounds" in bundle_tools.error_chain(err.value)
