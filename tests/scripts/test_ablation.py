"""scripts/ablation.py lung_nodule at the tiny setting: four real runs -> CSV, bar chart, history-based figures."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("ablation_script", REPO / "scripts" / "ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("ablation")
    assert module.main(["lung_nodule", "--out", str(out), "--cases", "3", "--device", "cpu"]) == 0
    return module, out


def test_table_comes_from_the_four_runs(ablation):
    module, out = ablation
    rows = list(csv.DictReader(open(out / "ablation.csv")))
    assert [r["setting"] for r in rows] == ["bce", "+dice", "+consistency", "+mc_dropout"]
    for row in rows:
        summary = json.loads((out / row["setting"].strip("+") / "eval" / "summary.json").read_text())
        for metric in module.METRICS:  # every number in the table is the one its own evaluation wrote
            assert float(row[metric]) == pytest.approx(summary[metric], nan_ok=True)
    assert [r["mc_samples"] for r in rows] == ["1", "1", "1", "4"]
    assert all(r["encoder_unfrozen_epoch"] == "2" for r in rows)
    assert int(rows[0]["trainable_parameters"]) < int(rows[0]["total_parameters"])
    assert (out / "ablation.png").stat().st_size > 5000


def test_per_setting_figures_from_history(ablation):
    _, out = ablation
    run = out / "mc_dropout"
    history = json.loads((run / "training_history.json").read_text())
    # tiny = LoRA: LoRA weights sit in the decoder LR group, so only lr_decoder is logged (full fine-tuning logs both)
    assert {"lr_decoder", "encoder_trainable"} <= set(history[0])
    for png in ("training_curves.png", "lr_schedule.png", "parameters.png"):
        assert (run / png).stat().st_size > 5000
    assert json.loads((out / "ablation.json").read_text())["overrides"]["finetune"] == "lora"


def test_unfreeze_epoch_from_history(ablation):
    module, _ = ablation
    assert module.unfreeze_epoch([{"epoch": 1, "encoder_trainable": False}, {"epoch": 2, "encoder_trainable": False},
                                  {"epoch": 3, "encoder_trainable": True}]) == 3
    assert module.unfreeze_epoch([{"epoch": 1, "encoder_trainable": True}]) is None
