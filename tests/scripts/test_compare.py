"""scripts/compare.py on optic-cup phantoms at the tiny CPU setting: SAM2 LoRA vs ResNet U-Net, one table."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """One comparison run (1 epoch each, 64 px, 8 phantom cases) shared by the asserts below."""
    out = tmp_path_factory.mktemp("compare")
    proc = subprocess.run([sys.executable, "scripts/compare.py", "--bundle", "optic_cup_fundus_sam2", "--out", str(out),
                           "--models", "sam2:lora,resnet", "--tiny", "--max_epochs", "1", "--cases", "8"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def test_table_has_one_row_per_model_with_measured_numbers(compared):
    out, stdout = compared
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert [r["name"] for r in rows] == ["sam2_lora", "resnet"]
    for r in rows:
        assert 0.0 <= float(r["mean_dice"]) <= 1.0 and 0.0 <= float(r["mean_iou"]) <= float(r["mean_dice"]) + 1e-9
        assert float(r["train_images_per_s"]) > 0 and float(r["peak_memory_mb"]) > 100
        assert r["memory_kind"] in ("cpu_peak_rss", "cuda_max_allocated")
    params = {r["name"]: int(r["trainable_params"]) for r in rows}
    assert params["sam2_lora"] < params["resnet"], "LoRA trains far fewer weights than a from-scratch U-Net"
    md = (out / "comparison.md").read_text()
    assert md.startswith("| name | mean_dice") and md.count("\n") == 4 and "| resnet |" in stdout
    assert (out / "comparison.png").stat().st_size > 5000


def test_numbers_come_from_each_runs_own_files(compared):
    """Table values equal each run's run_stats.json, whose Dice is the bundle's own eval/summary.json."""
    out, _ = compared
    rows = {r["name"]: r for r in csv.DictReader((out / "comparison.csv").open())}
    keys = None
    for name in ("sam2_lora", "resnet"):
        stats = json.loads((out / name / "run_stats.json").read_text())
        summary = json.loads((out / name / "eval" / "summary.json").read_text())
        assert float(rows[name]["mean_dice"]) == pytest.approx(summary["mean_dice"]) == pytest.approx(stats["mean_dice"])
        assert stats["settings"]["image_size"] == 64 and stats["settings"]["max_epochs"] == 1  # same budget
        assert (out / name / "training_history.json").is_file() and (out / name / "eval" / "per_image.csv").is_file()
        keys = keys or set(summary)
        assert set(summary) == keys, "baseline and SAM2 summaries must share the bundle's format"


def test_collect_rebuilds_table_without_training(compared):
    out, _ = compared
    spec = importlib.util.spec_from_file_location("compare", REPO / "scripts" / "compare.py")
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    (out / "comparison.csv").unlink()
    assert compare.main(["--bundle", "optic_cup_fundus_sam2", "--out", str(out), "--models", "sam2:lora,resnet", "--collect"]) == 0
    assert [r["name"] for r in csv.DictReader((out / "comparison.csv").open())] == ["sam2_lora", "resnet"]
    with pytest.raises(SystemExit, match="sam2:lora"):
        compare.parse_models("sam2")
