"""scripts/ablation.py (sam2tune.tools.ablation) lung_nodule, tiny: untrained reference + four runs -> CSV, figures."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from sam2tune.tools import ablation as module


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablation")
    assert module.main(["lung_nodule", "--out", str(out), "--cases", "3", "--device", "cpu"]) == 0
    yield module, out
    shutil.rmtree(out, ignore_errors=True)  # four full checkpoints (~2 GB): free the disk once the module is done


def test_table_comes_from_the_four_runs(ablation):
    module, out = ablation
    rows = list(csv.DictReader(open(out / "ablation.csv")))
    assert [r["setting"] for r in rows] == ["untrained", "bce", "+dice", "+consistency", "+mc_dropout"]
    for row in rows:
        summary = json.loads((out / row["setting"].strip("+") / "eval" / "summary.json").read_text())
        for metric in [*module.METRICS, "mean_uncertainty"]:  # every number is the one its own evaluation wrote
            assert float(row[metric]) == pytest.approx(summary[metric], nan_ok=True)
    assert [r["mc_samples"] for r in rows] == ["1", "1", "1", "1", "4"]
    assert rows[0]["epochs"] == "0" and all(r["encoder_unfrozen_epoch"] == "2" for r in rows[1:])
    # full fine-tuning: after the warm-up every parameter trains
    assert all(int(r["trainable_parameters"]) == int(r["total_parameters"]) > 0 for r in rows[1:])
    assert (out / "ablation.png").stat().st_size > 5000


def test_trained_settings_left_the_untrained_state(ablation):
    # The degenerate table this guards against: every setting still at p ~ 0.5 everywhere (entropy ~1 bit), i.e.
    # the untrained network's numbers. After 4 steps at LR 1e-3 each setting must be clearly more certain than that.
    _, out = ablation
    rows = {r["setting"]: r for r in csv.DictReader(open(out / "ablation.csv"))}
    reference = rows.pop("untrained")
    untrained = float(reference["mean_uncertainty"])
    assert untrained > 0.9
    for name, row in rows.items():
        assert float(row["mean_uncertainty"]) < 0.85 * untrained, name
        # its uncertainty now marks its errors (untrained: ~0.3, below chance); Dice is not compared: 4 steps are
        # too few for the mask to beat the untrained "half the crop" Dice on a nodule-centred crop
        assert float(row["uncertainty_auroc"]) > float(reference["uncertainty_auroc"]) + 0.2, name
    # and the loss / dropout choices reach the model: the four settings do not all give the same numbers
    assert len({(round(float(r["mean_dice"]), 4), round(float(r["ece"]), 4)) for r in rows.values()}) > 1


def test_per_setting_figures_from_history(ablation):
    _, out = ablation
    run = out / "mc_dropout"
    history = json.loads((run / "training_history.json").read_text())
    # full fine-tuning logs both parameter groups; the encoder's LR is the decoder's x encoder_lr_mult (0.1)
    assert [r["encoder_trainable"] for r in history] == [False, True, True, True]
    assert history[0]["lr_image_encoder"] == pytest.approx(0.1 * history[0]["lr_decoder"])
    for png in ("training_curves.png", "lr_schedule.png", "parameters.png"):
        assert (run / png).stat().st_size > 5000
    assert json.loads((out / "ablation.json").read_text())["overrides"]["finetune"] == "full"


def test_unfreeze_epoch_from_history(ablation):
    module, _ = ablation
    assert module.unfreeze_epoch([{"epoch": 1, "encoder_trainable": False}, {"epoch": 2, "encoder_trainable": False},
                                  {"epoch": 3, "encoder_trainable": True}]) == 3
    assert module.unfreeze_epoch([{"epoch": 1, "encoder_trainable": True}]) is None
