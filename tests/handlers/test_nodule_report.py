"""NoduleUncertaintyReport: an all-zero prediction scores Dice 0 and is counted, never reported as a good Dice."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from ignite.engine import Engine

from sam2tune.handlers.nodule_report import NoduleUncertaintyReport


def _item(prob: torch.Tensor, label: torch.Tensor, ident: str) -> dict:
    """(S, H, W) probability and label -> batch item carrying (under "_out") the output SplitUncertaintyd would give."""
    prob, label = prob[None].float(), label[None].float()
    out = {"prob": prob, "uncertainty": torch.zeros_like(prob), "pred": (prob >= 0.5).float(), "label": label,
           "image": torch.zeros_like(prob)}
    return {"id": ident, "nodule": 0, "center": torch.tensor([4.0, 4.0, 1.0]), "_out": out}


def _run(items: list[dict], out_dir) -> dict:
    report = NoduleUncertaintyReport(str(out_dir), num_overlays=0)
    engine = Engine(lambda e, batch: [item["_out"] for item in batch])
    report.attach(engine)
    engine.run([items], max_epochs=1)  # one iteration holding every item
    return json.loads((out_dir / "summary.json").read_text())


def test_all_zero_prediction_is_dice_zero_and_counted(tmp_path):
    label = torch.zeros(3, 8, 8)
    label[:, 2:6, 2:6] = 1
    perfect = _item(label.clone() * 0.9 + 0.05, label, "good")
    empty = _item(torch.full((3, 8, 8), 0.01), label, "empty")  # confident background everywhere: all-zero mask
    summary = _run([perfect, empty], tmp_path)
    rows = {r["id"]: r for r in csv.DictReader(open(tmp_path / "per_nodule.csv"))}
    assert float(rows["empty"]["dice"]) == 0.0 and float(rows["empty"]["iou"]) == 0.0
    assert rows["empty"]["empty_prediction"] == "True" and rows["good"]["empty_prediction"] == "False"
    assert summary["empty_predictions"] == 1 and summary["n_scored"] == 2
    assert summary["mean_dice"] == pytest.approx(0.5)  # (1 + 0) / 2: the empty nodule pulls the mean down


def test_only_empty_predictions_give_zero_dice(tmp_path):
    label = torch.zeros(3, 8, 8)
    label[1, 3:5, 3:5] = 1
    summary = _run([_item(torch.zeros(3, 8, 8), label, f"c{i}") for i in range(3)], tmp_path)
    assert summary["mean_dice"] == 0.0 and summary["mean_iou"] == 0.0 and summary["empty_predictions"] == 3


def test_empty_label_is_not_scored_as_a_hit(tmp_path):
    # No nodule and no prediction: Dice is undefined, so the nodule is left out of the mean instead of counting 1.
    label = torch.zeros(3, 8, 8)
    label[:, 2:6, 2:6] = 1
    summary = _run([_item(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8), "none"),
                    _item(torch.zeros(3, 8, 8), label, "miss")], tmp_path)
    assert summary["empty_ground_truth"] == 1 and summary["n_scored"] == 1
    assert summary["mean_dice"] == 0.0 and summary["empty_predictions"] == 1
