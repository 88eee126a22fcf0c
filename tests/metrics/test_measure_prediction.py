"""measure_prediction: label-free biomarkers of a predicted knee volume, on every slice or the representative one."""

from __future__ import annotations

import numpy as np
import pytest

from sam2tune.metrics import build_biomarker_metric, measure_prediction


def _prediction():
    pred = np.zeros((3, 8, 8), np.uint8)
    pred[0, 1:3, 1:5] = 1  # 8 voxels of tissue 1 on slice 0
    pred[1, 2:6, 2:6] = 1  # 16 on slice 1: the slice with most predicted tissue
    pred[2, 0:2, 0:2] = 2  # tissue 2 only on slice 2
    t2 = np.broadcast_to(np.arange(3, dtype=np.float32)[:, None, None] * 10 + 30, pred.shape).copy()
    return pred, {"t2": t2}, [(2.0, 0.5, 0.5)] * 3


def test_every_slice_gives_one_row_per_tissue_and_biomarker():
    pred, maps, spacings = _prediction()
    metric = build_biomarker_metric({"func": {"volume": True, "t2": True}, "tissues": {"1": "femoral", "2": "tibial"}})
    rows = measure_prediction(metric, "s01", pred, maps, spacings)
    values = {(r["tissue"], r["biomarker"]): r["prediction"] for r in rows}
    assert all(r["subject"] == "s01" and set(r) == {"subject", "tissue", "biomarker", "prediction"} for r in rows)
    assert values[("femoral", "volume_mm3")] == pytest.approx(24 * 0.5)  # 24 voxels x 0.5 mm^3
    assert values[("tibial", "volume_mm3")] == pytest.approx(4 * 0.5)
    assert values[("femoral", "t2_ms_mean")] == pytest.approx((8 * 30 + 16 * 40) / 24)
    assert values[("tibial", "t2_ms_median")] == pytest.approx(50.0)


def test_representative_slice_is_the_metadata_index_or_the_fullest_slice():
    pred, maps, spacings = _prediction()
    config = {"func": {"volume": True}, "tissues": {"1": "femoral"}, "representative_slice": True}
    metric = build_biomarker_metric(config)
    fullest = {r["tissue"]: r["prediction"] for r in measure_prediction(metric, "s01", pred, maps, spacings)}
    assert fullest == {"femoral": pytest.approx(16 * 0.5)}  # slice 1 alone
    rows = measure_prediction(metric, "s01", pred, maps, spacings, meta_slice=0)
    given = {r["tissue"]: r["prediction"] for r in rows}
    assert given == {"femoral": pytest.approx(8 * 0.5)}
