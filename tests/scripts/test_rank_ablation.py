"""scripts/rank_ablation.py (sam2tune.tools.rank_ablation): LoRA at ranks 4/8/16, one CSV row per rank."""

from __future__ import annotations

import csv

import pytest

from sam2tune.data.phantoms.severstal import write_severstal_phantoms
from sam2tune.tools import rank_ablation


def test_rank_ablation_csv(tmp_path):
    data = tmp_path / "data"
    write_severstal_phantoms(str(data), cases=6, seed=2, size=32)
    out = tmp_path / "ablation"
    tiny = ["--sam2_variant", "tiny", "--image_size", "64", "--num_workers", "0", "--batch_size", "8", "--amp", "false",
            "--max_epochs", "1", "--val_interval", "1", "--deterministic", "false"]
    argv = ["--dataset_dir", str(data), "--output_dir", str(out), "--ranks", "4,8,16", "--in_process", "--", *tiny]
    assert rank_ablation.main(argv) == 0
    rows = list(csv.DictReader(open(out / "rank_ablation.csv")))
    assert [r["lora_r"] for r in rows] == ["4", "8", "16"] and [r["lora_alpha"] for r in rows] == ["8", "16", "32"]
    params = [int(r["trainable_params"]) for r in rows]
    assert params[0] < params[1] < params[2]  # LoRA parameters grow with the rank
    adapter = [float(r["adapter_kb"]) for r in rows]
    assert adapter[0] < adapter[1] < adapter[2]
    assert all(0.0 <= float(r["best_val_iou"]) <= 1.0 and float(r["seconds"]) > 0 for r in rows)
    assert all((out / f"lora_r{r}" / "training_summary.json").is_file() for r in (4, 8, 16))


def test_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        rank_ablation.main(["--dataset_dir", str(tmp_path), "--output_dir", str(tmp_path), "--ranks", "four"])
    with pytest.raises(SystemExit, match="--key value"):
        rank_ablation.main(["--dataset_dir", str(tmp_path), "--output_dir", str(tmp_path), "--", "oops"])
    with pytest.raises(SystemExit, match="no_such_bundle"):  # names the bundle that cannot be found
        rank_ablation.main(["--dataset_dir", str(tmp_path), "--output_dir", str(tmp_path),
                            "--bundle", "no_such_bundle"])
