"""scripts/compare.py on optic-cup phantoms at the tiny CPU setting: SAM2 LoRA + decoder vs ResNet U-Net, one table."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sam2tune.tools import compare

REPO = Path(__file__).resolve().parents[2]
SAM2 = "sam2_lora+decoder"


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """One comparison run (1 epoch each, 64 px, 8 phantom cases) shared by the asserts below."""
    out = tmp_path_factory.mktemp("compare")
    proc = subprocess.run([sys.executable, "scripts/compare.py", "--bundle", "optic_cup_fundus_sam2", "--out", str(out),
                           "--models", "sam2:lora+decoder,resnet", "--tiny", "--max_epochs", "1", "--cases", "8"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    yield out, proc.stdout
    shutil.rmtree(out, ignore_errors=True)  # checkpoints: free the disk once the module is done


def test_table_has_one_row_per_model_with_measured_numbers(compared):
    out, stdout = compared
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert [r["name"] for r in rows] == [SAM2, "resnet"]
    for r in rows:
        assert 0.0 <= float(r["mean_dice"]) <= 1.0 and 0.0 <= float(r["mean_iou"]) <= float(r["mean_dice"]) + 1e-9
        assert float(r["train_images_per_s"]) > 0 and float(r["peak_memory_mb"]) > 100
        assert r["memory_kind"] in ("cpu_peak_rss", "cuda_max_allocated")
        assert r["init"] == "random" and int(r["epochs_trained"]) == 1
        assert float(r["learning_rate"]) == pytest.approx(1e-3), "random-init SAM2 trains at the baselines' rate"
    params = {r["name"]: int(r["trainable_params"]) for r in rows}
    # LoRA alone trains 314,880 weights of SAM2-tiny; +decoder adds the mask decoder's own (~3M)
    assert 2_000_000 < params[SAM2] < params["resnet"]
    md = (out / "comparison.md").read_text().splitlines()
    assert "random init" in md[0] and "1 epochs" in md[0] and "64 px" in md[0]
    assert md[2].startswith("| name | init | mean_dice") and len(md) == 6 and "| resnet |" in stdout
    assert (out / "comparison.png").stat().st_size > 5000


def test_numbers_come_from_each_runs_own_files(compared):
    """Table values equal each run's run_stats.json, whose Dice is the bundle's own eval/summary.json."""
    out, _ = compared
    rows = {r["name"]: r for r in csv.DictReader((out / "comparison.csv").open())}
    keys = None
    for name in (SAM2, "resnet"):
        stats = json.loads((out / name / "run_stats.json").read_text())
        summary = json.loads((out / name / "eval" / "summary.json").read_text())
        dice = float(rows[name]["mean_dice"])
        assert dice == pytest.approx(summary["mean_dice"]) == pytest.approx(stats["mean_dice"])
        assert stats["settings"]["image_size"] == 64 and stats["settings"]["max_epochs"] == 1  # same budget
        assert stats["settings"]["early_stop_patience"] == 1  # patience = the epoch budget: no early stop
        assert (out / name / "training_history.json").is_file() and (out / name / "eval" / "per_image.csv").is_file()
        keys = keys or set(summary)
        assert set(summary) == keys, "baseline and SAM2 summaries must share the bundle's format"


def test_collect_rebuilds_table_without_training(compared):
    out, _ = compared
    (out / "comparison.csv").unlink()
    assert compare.main(["--bundle", "optic_cup_fundus_sam2", "--out", str(out), "--models", "sam2:lora+decoder,resnet",
                         "--collect"]) == 0
    assert [r["name"] for r in csv.DictReader((out / "comparison.csv").open())] == [SAM2, "resnet"]


def test_model_specs_become_the_same_budget_for_every_run(tmp_path):
    """No training: the command lines compare.py would run (flags, learning rates, patience)."""
    with pytest.raises(SystemExit, match="sam2:lora"):
        compare.parse_models("sam2")
    with pytest.raises(SystemExit, match="extras"):
        compare.parse_models("sam2:lora+encoder")
    with pytest.raises(SystemExit, match="unknown model"):
        compare.parse_models("resnet+decoder")
    models = compare.parse_models(compare.DEFAULT_MODELS)
    assert [n for n, _ in models] == ["sam2_full", SAM2, "sam2_lora", "resnet", "yolo"]

    args = compare.build_parser().parse_args(["--bundle", "optic_cup_fundus_sam2", "--tiny", "--max_epochs", "7"])
    cmds = {n: compare.run_command(spec, n, args, "/data", tmp_path) for n, spec in models}
    for cmd in cmds.values():
        assert cmd[1:3] == ["-m", "sam2tune.tools.train_baseline"]  # the installed package, no script path
        assert cmd[-2:] == ["--set", "early_stop_patience=7"] and cmd[cmd.index("--max_epochs") + 1] == "7"
        assert cmd[cmd.index("--learning_rate") + 1] == "0.001"
    assert "finetune_settings#train_mask_decoder=true" in cmds[SAM2]
    assert "finetune_settings#train_mask_decoder=true" not in cmds["sam2_lora"]
    assert cmds[SAM2][cmds[SAM2].index("--finetune") + 1] == "lora"

    pre = compare.build_parser().parse_args(["--bundle", "optic_cup_fundus_sam2", "--pretrained_checkpoint", "/c.pt",
                                             "--patience", "3"])
    cmd = compare.run_command("sam2:full", "sam2_full", pre, "/data", tmp_path)
    assert "--learning_rate" not in cmd, "pretrained SAM2 keeps the bundle's fine-tuning rate"
    assert cmd[cmd.index("--pretrained_checkpoint") + 1] == "/c.pt" and cmd[-1] == "early_stop_patience=3"
    default = compare.build_parser().parse_args(["--bundle", "optic_cup_fundus_sam2"])
    assert compare.run_command("resnet", "resnet", default, "/d", tmp_path)[-1] == "early_stop_patience=30"
