"""scripts/train_baseline.py: argument handling, the overrides it puts into a bundle, and clear errors.

The SAM2 + ResNet train + evaluate path runs in tests/scripts/test_compare.py (one shared tiny run); the YOLO path
runs here, in-process.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from sam2tune.baselines.workflow import model_overrides
from sam2tune.tools import train_baseline


def _per_image(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _settings(*argv):
    return train_baseline.settings_from_args(train_baseline.build_parser().parse_args(list(argv)))


def test_settings_tiny_flags_and_set():
    s = _settings("--model", "resnet", "--bundle", "b", "--tiny", "--max_epochs", "3", "--device", "cpu",
                  "--set", "val_interval=2", "--set", "dataset_dir=/data/x")
    assert s["image_size"] == 64 and s["max_epochs"] == 3 and s["val_interval"] == 2
    assert s["device"] == "$torch.device('cpu')" and s["dataset_dir"] == "/data/x"
    with pytest.raises(SystemExit, match="--model sam2 only"):
        _settings("--model", "resnet", "--bundle", "b", "--finetune", "lora")
    with pytest.raises(SystemExit, match="KEY=JSON"):
        _settings("--model", "resnet", "--bundle", "b", "--set", "oops")


def test_resnet_overrides_swap_only_network_optimizer_and_prompts():
    over = model_overrides("resnet", "optic_cup_fundus_sam2", prompt="box")
    assert set(over) == {"network_def", "network", "optimizer#params", "prepare_batch#prompts"}
    assert over["network_def"]["_target_"] == "sam2tune.baselines.ResNetUNet"
    assert over["network_def"]["in_channels"] == 3 and over["network_def"]["prompt_channel"] is True
    assert over["prepare_batch#prompts"] == ["boxes"]
    none = model_overrides("resnet", "optic_cup_fundus_sam2", prompt="none", evaluate=True, distributed=True)
    assert none["prepare_batch#prompts"] == [] and "network#module" in none
    assert none["network_def"]["pretrained_checkpoint"] == "$@ckpt_dir + '/model.pt'"
    assert model_overrides("sam2", "optic_cup_fundus_sam2") == {}
    with pytest.raises(ValueError, match="model must be one of"):
        model_overrides("vit", "optic_cup_fundus_sam2")


def test_yolo_trains_and_is_scored_by_the_bundle(tmp_path, capsys):
    """--model yolo, in-process (a subprocess would re-import torch + monai): 1 epoch at 64 px on 6 phantoms, then
    the bundle's own evaluation writes the same summary.json format as for SAM2 and the ResNet U-Net."""
    from sam2tune.baselines.yolo import _ultralytics
    from sam2tune.data.phantoms import write_phantoms
    from sam2tune.data.refuge import refuge_datalist

    _ultralytics()  # pinned in requirements.txt: a missing install fails here (offline import), it is not a skip
    data = write_phantoms("refuge", str(tmp_path / "phantoms"), cases=6, seed=0)["root"]
    out = tmp_path / "yolo"
    rc = train_baseline.main(["--model", "yolo", "--bundle", "optic_cup_fundus_sam2", "--dataset_dir", str(data),
                              "--out", str(out), "--tiny", "--max_epochs", "1"])
    assert rc == 0, capsys.readouterr().err[-2000:]
    stats = json.loads((out / "run_stats.json").read_text())
    summary = json.loads((out / "eval" / "summary.json").read_text())
    assert stats["model"] == "yolo" and stats["mean_dice"] == pytest.approx(summary["mean_dice"])
    test_ids = sorted(i["id"] for i in refuge_datalist(data, "test"))
    assert summary["n"] == len(test_ids) == 2 and set(summary["per_class"]) == {"optic_cup"}
    rows = _per_image(out / "eval" / "per_image.csv")
    assert sorted(r["id"] for r in rows) == test_ids  # each test case scored once
    assert all(int(r["gt_pixels"]) > 0 and r["raters"] == "7" for r in rows)  # truth = mean of the 7 raters
    dice = [float(r["dice"]) for r in rows]
    assert all(math.isfinite(d) for d in dice)  # every phantom has a cup: no row may be NaN
    assert summary["mean_dice"] == pytest.approx(sum(dice) / len(dice))
    assert 3_000_000 < stats["trainable_params"] < 3_600_000 and stats["train_images_per_s"] > 0
    history = json.loads((out / "training_history.json").read_text())
    assert len(history) == 1 and history[0]["train_loss"] > 0 and "val_mean_dice" in history[0]
    assert (out / "models" / "model.pt").is_file() and (out / "eval" / "per_image.csv").is_file()
    assert "mean_dice" in capsys.readouterr().out


def test_cli_errors_name_the_reason(tmp_path, capsys):
    """main() in-process: exit status 2 and the reason on stderr."""
    rc = train_baseline.main(["--model", "resnet", "--bundle", "no_such_bundle", "--out", str(tmp_path / "b")])
    assert rc == 2 and "no_such_bundle" in capsys.readouterr().err
