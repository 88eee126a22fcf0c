"""Biomarkers on analytic knee phantoms: thickness, volume, height and map values recovered from ground truth.

Stated tolerances (from the geometry of rasterised plates 2.5-4 mm thick at 0.3-0.45 mm in-plane pixels):
mean thickness within 8 %, median thickness within 12 %, volume within 3 %, height within 2 row pixels,
T1rho / T2 mean and median within 0.5 ms (noise sd 2 ms over hundreds of voxels).
"""

import json

import numpy as np
import pytest

from sam2tune.data.knee import scan_knee_dataset
from sam2tune.data.phantoms.knee import TISSUES, write_knee_phantoms
from sam2tune.metrics.biomarkers import cartilage_thickness, local_thickness_2d, tissue_volume
from sam2tune.metrics.factory import TissueMissingError, build_biomarker_metric, summarize_rows

ALL = {"cartilage_thickness": True, "volume": True, "height": True, "t1rho": True, "t2": True}
NAMES = {str(k): v for k, v in TISSUES.items()}


def _spacings(subject):
    return [(m["slice_thickness"], *m["pixel_spacing"]) for m in subject.meta_stats]


@pytest.fixture(scope="module", params=[((3.0, 0.3, 0.3), 128), ((1.5, 0.45, 0.3), (96, 128))],
                ids=["isotropic_inplane", "anisotropic"])
def phantom(request, tmp_path_factory):
    spacing, size = request.param
    out = str(tmp_path_factory.mktemp("knee"))
    write_knee_phantoms(out, cases=2, size=size, slices=6, spacing=spacing, seed=3)
    with open(f"{out}/truth.json") as fh:
        truth = json.load(fh)
    subjects, skipped = scan_knee_dataset(out)
    assert not skipped
    return subjects, truth, spacing


def test_ground_truth_biomarkers_match_analytic_truth(phantom):
    subjects, truth, spacing = phantom
    metric = build_biomarker_metric({"func": ALL, "tissues": NAMES})
    for s in subjects:
        assert s.spacing == pytest.approx(spacing)
        measured = metric.measure(s.label, s.maps, _spacings(s))
        for tissue, values in measured.items():
            t = truth["subjects"][s.subject][tissue]
            assert values["thickness_mean_mm"] == pytest.approx(t["thickness_mm"], rel=0.08), (s.subject, tissue)
            assert values["thickness_median_mm"] == pytest.approx(t["thickness_mm"], rel=0.12), (s.subject, tissue)
            assert values["volume_mm3"] == pytest.approx(t["volume_mm3"], rel=0.03), (s.subject, tissue)
            assert abs(values["height_mm"] - t["height_mm"]) <= 2 * spacing[1], (s.subject, tissue)
            for m in ("t1rho", "t2"):
                assert values[f"{m}_ms_mean"] == pytest.approx(t[f"{m}_ms"], abs=0.5)
                assert values[f"{m}_ms_median"] == pytest.approx(t[f"{m}_ms"], abs=0.5)


def test_representative_slice_and_prediction_differences(phantom):
    subjects, truth, spacing = phantom
    s = subjects[0]
    metric = build_biomarker_metric({"func": {"volume": True, "cartilage_thickness": True}, "tissues": NAMES,
                                     "representative_slice": True})
    rows = metric.compare(s.subject, s.label, s.label, s.maps, _spacings(s), s.meta_ml["slice"])
    assert {r["difference"] for r in rows} == {0.0}
    vol = {r["tissue"]: r["ground_truth"] for r in rows if r["biomarker"] == "volume_mm3"}
    for tissue, v in vol.items():  # one slice: area x slice thickness
        assert v == pytest.approx(truth["subjects"][s.subject][tissue]["area_mm2"] * spacing[0], rel=0.03)
    # a prediction that misses the outer half of every femoral voxel row reads thinner and smaller
    pred = s.label.copy()
    fem = pred == 1
    pred[fem & ~np.roll(fem, 3, axis=1)] = 0
    rows = metric.compare(s.subject, pred, s.label, s.maps, _spacings(s), None)
    fem_rows = {r["biomarker"]: r for r in rows if r["tissue"] == "femoral_cartilage"}
    assert fem_rows["volume_mm3"]["difference"] < 0
    assert fem_rows["thickness_mean_mm"]["difference"] < 0
    summary = summarize_rows(rows)
    assert summary["femoral_cartilage"]["volume_mm3"]["mean_abs_difference"] == pytest.approx(
        abs(fem_rows["volume_mm3"]["difference"]))


def test_plate_thickness_with_anisotropic_pixels():
    # a flat plate 12 rows x 0.25 mm = 3 mm thick, pixels 0.25 x 0.8 mm: rows carry the thickness
    mask = np.zeros((40, 60), bool)
    mask[10:22, 5:55] = True
    v = local_thickness_2d(mask, (0.25, 0.8))
    assert np.median(v) == pytest.approx(3.0, rel=0.05)
    out = cartilage_thickness(mask[None], [(2.0, 0.25, 0.8)], percentile=90)
    assert set(out) == {"thickness_mean_mm", "thickness_median_mm", "thickness_p90_mm"}
    assert tissue_volume(mask[None], [(2.0, 0.25, 0.8)])["volume_mm3"] == pytest.approx(12 * 50 * 0.25 * 0.8 * 2.0)


def test_bad_config_and_missing_tissue(phantom):
    subjects, _, _ = phantom
    with pytest.raises(ValueError, match="unknown biomarkers \\['thicknes'\\]"):
        build_biomarker_metric({"func": {"thicknes": True}, "tissues": [1]})
    with pytest.raises(ValueError, match="enables no biomarker"):
        build_biomarker_metric({"func": {"volume": False}, "tissues": [1]})
    s = subjects[0]
    metric = build_biomarker_metric({"func": {"volume": True}, "tissues": {"1": "femoral", "7": "meniscus"}})
    with pytest.raises(TissueMissingError, match=f"subject {s.subject}, label tissue 7 \\(meniscus\\): no voxels"):
        metric.compare(s.subject, s.label, s.label, s.maps, _spacings(s))
