"""sam2tune.tools.seed_study: the table and its spread come from the per-seed rows (the runs themselves are tested by
tests/bundles/test_abdomen_ct_sam2.py::test_guard_three_d_training_learns)."""

from __future__ import annotations

import csv
import json

import pytest

from sam2tune.tools import seed_study


def _result(seed: int, mean: float, passes: bool) -> dict:
    row = {c: 0.0 for c in seed_study.COLUMNS}
    row.update(seed=seed, mean_dice=mean, passes=passes, reached_both_ways=10 if passes else 7, organ_volumes=10)
    history = [{"epoch": e, "iteration": 10 * e, "val_mean_dice": mean * e / 4} for e in (2, 4)]
    return {**row, "reach": {"img0001/1": passes}, "history": history}


def test_table_mean_and_sd_over_seeds(tmp_path):
    payload = seed_study.write_tables("guard", [_result(0, 0.5, False), _result(1, 0.9, True)], str(tmp_path))
    assert payload["mean_sd"]["mean_dice"] == pytest.approx([0.7, 0.2828427], rel=1e-6)  # sample sd of 0.5, 0.9
    assert payload["mean_sd"]["passes"] == pytest.approx([0.5, 0.7071068], rel=1e-6)
    rows = list(csv.DictReader(open(tmp_path / "seed_table.csv")))
    assert [r["seed"] for r in rows] == ["0", "1"] and rows[1]["passes"] == "True"
    assert "| mean ± sd |" in (tmp_path / "seed_table.md").read_text()
    assert json.loads((tmp_path / "seed_table.json").read_text())["reach"]["1"] == {"img0001/1": True}
    assert (tmp_path / "val_curves.png").stat().st_size > 5000


def test_bad_seeds_are_refused():
    with pytest.raises(SystemExit):
        seed_study.main(["--seeds", "0,x"])
