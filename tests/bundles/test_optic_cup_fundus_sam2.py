"""optic_cup_fundus_sam2 on REFUGE phantoms: the contract commands, outputs, resume and bad input."""

from __future__ import annotations

import json
import os
import shutil

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
    bundle_tools.run_workflow(BUNDLE, ["train"], dataset_dir=phantoms, output_dir=str(out), ckpt_dir=str(out / "models"),
                 max_epochs=2, finetune="lora", learning_rate=1e-3, **bundle_tools.TINY)
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
    bundle_tools.run_workflow(BUNDLE, ["train"], dataset_dir=phantoms, output_dir=str(trained), ckpt_dir=str(trained / "models"),
                 max_epochs=3, finetune="lora", learning_rate=1e-3, **bundle_tools.TINY)
    history = json.loads((trained / "training_history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[2]["iteration"] == 3 * history[0]["iteration"]


def test_evaluate_writes_report(trained, phantoms, bundle_tools):
    bundle_tools.run_workflow(BUNDLE, ["train", "evaluate"], dataset_dir=phantoms, output_dir=str(trained),
                 ckpt_dir=str(trained / "models"), **bundle_tools.TINY)
    summary = json.loads((trained / "eval" / "summary.json").read_text())
    assert summary["n"] >= 2 and 0.0 <= summary["mean_dice"] <= 1.0
    assert (trained / "eval" / "per_image.csv").read_text().count("\n") == summary["n"] + 1
    assert len(os.listdir(trained / "eval" / "qc")) >= 2


def test_inference_cli_on_real_fundus_photo(trained, tmp_path, bundle_tools):
    """`run inferring` verbatim on scikit-image's real 1411x1411 retina photo, prompt-free and with a box."""
    import skimage
    from PIL import Image

    photo = os.path.join(os.path.dirname(skimage.__file__), "data", "retina.jpg")
    out = tmp_path / "masks"
    bundle_tools.run_cli(["-m", "monai.bundle", "run", "inferring", "--config_file", bundle_tools.config_path(BUNDLE, "inference"),
             "--input_path", photo, "--output_dir", str(out), "--ckpt_dir", str(trained / "models"),
             "--image_size", "64", "--box", "[500,500,900,900]"])
    mask = Image.open(out / "retina_mask.png")
    assert mask.size == (1411, 1411)


def test_bad_dataset_dir_names_the_fix(tmp_path, bundle_tools):
    with pytest.raises(Exception) as err:
        bundle_tools.run_workflow(BUNDLE, ["train"], dataset_dir=str(tmp_path / "nowhere"), output_dir=str(tmp_path), **bundle_tools.TINY)
    message = bundle_tools.error_chain(err.value)
    assert "nowhere" in message and "make_phantoms.py refuge" in message


def test_unknown_finetune_names_the_key(phantoms, tmp_path, bundle_tools):
    with pytest.raises(Exception) as err:
        bundle_tools.run_workflow(BUNDLE, ["train"], dataset_dir=phantoms, output_dir=str(tmp_path), finetune="sideways", **bundle_tools.TINY)
    message = bundle_tools.error_chain(err.value)
    assert "sideways" in message and "finetune" in message and "lora" in message


def test_training_cli_verbatim(phantoms, tmp_path, bundle_tools):
    """`python -m monai.bundle run training --config_file ...` with --key value overrides, as users type it."""
    bundle_tools.run_cli(["-m", "monai.bundle", "run", "training", "--config_file", bundle_tools.config_path(BUNDLE, "train"),
             "--dataset_dir", phantoms, "--output_dir", str(tmp_path), "--ckpt_dir", str(tmp_path / "m"),
             "--finetune", "decoder_only", "--max_epochs", "1", "--image_size", "64", "--num_workers", "0",
             "--batch_size", "4"])
    assert (tmp_path / "m" / "model.pt").is_file()


def test_torchrun_two_processes_gloo(phantoms, tmp_path, bundle_tools):
    """The contract's torchrun command with multi_gpu_train.json: 2 CPU processes (gloo), one tiny epoch, rank-0 files."""
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
