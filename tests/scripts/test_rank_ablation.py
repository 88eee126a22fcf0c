"""scripts/rank_ablation.py: one command trains LoRA at ranks 4/8/16 and writes one CSV row per rank."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

from sam2tune.data.phantoms.severstal import write_severstal_phantoms

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "rank_ablation.py"


def _load():
    spec = importlib.util.spec_from_file_location("rank_ablation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rank_ablation_csv(tmp_path):
    data = tmp_path / "data"
    write_severstal_phantoms(str(data), cases=6, seed=2, size=32)
    out = tmp_path / "ablation"
    tiny = ["--sam2_variant", "tiny", "--image_size", "64", "--num_workers", "0", "--batch_size", "8", "--amp", "false",
            "--max_epochs", "1", "--val_interval", "1", "--deterministic", "false"]
    assert _load().main(["--dataset_dir", str(data), "--output_dir", str(out), "--ranks", "4,8,16", "--in_process", "--", *tiny]) == 0
    rows = list(csv.DictReader(open(out / "rank_ablation.csv")))
    assert [r["lora_r"] for r in rows] == ["4", "8", "16"] and [r["lora_alpha"] for r in rows] == ["8", "16", "32"]
    params = [int(r["trainable_params"]) for r in rows]
    assert params[0] < params[1] < params[2]  # LoRA parameters grow with the rank
    adapter = [float(r["adapter_kb"]) for r in rows]
    assert adapter[0] < adapter[1] < adapter[2]
    assert all(0.0 <= float(r["best_val_iou"]) <= 1.0 and float(r["seconds"]) > 0 for r in rows)
    assert all((out / f"lora_r{r}" / "training_summary.json").is_file() for r in (4, 8, 16))


def test_bad_arguments(tmp_path):
    module = _load()
    with pytest.raises(SystemExit):
        module.main(["--dataset_dir", str(tmp_path), "--output_dir", str(tmp_path), "--ranks", "four"])
    with pytest.raises(SystemExit, match="--key value"):
        module.main(["--dataset_dir", str(tmp_path), "--output_dir", str(tmp_path), "--", "oops"])
