"""Biomarker metric factory: a config dict (which biomarkers, which tissues, representative slice or all) -> metric.

Bundle config::

    "metric": {"func": {"cartilage_thickness": true, "volume": true, "height": true, "t1rho": true, "t2": true},
               "tissues": {"1": "femoral_cartilage", "2": "tibial_cartilage"}, "representative_slice": false}

The metric measures prediction and ground truth label volumes of one subject and returns one row per (tissue,
biomarker) with both values and their difference.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from sam2tune.metrics.biomarkers import cartilage_thickness, map_statistics, tissue_height, tissue_volume
from sam2tune.utils.flags import as_bool

MeasureFn = Callable[[np.ndarray, Mapping[str, np.ndarray], Sequence[Sequence[float]]], dict]


def _map_fn(name: str) -> MeasureFn:
    def measure(mask, maps, spacings):
        if name not in maps:
            raise KeyError(f"biomarker {name!r} needs the {name} map, but the subject has only {sorted(maps)}.")
        return map_statistics(mask, maps[name], name + "_ms")
    return measure


def _registry(percentile: float) -> dict[str, MeasureFn]:
    return {
        "cartilage_thickness": lambda mask, maps, sp: cartilage_thickness(mask, sp, percentile),
        "volume": lambda mask, maps, sp: tissue_volume(mask, sp),
        "height": lambda mask, maps, sp: tissue_height(mask, sp),
        "t1rho": _map_fn("t1rho"),
        "t2": _map_fn("t2"),
    }


BIOMARKERS = tuple(_registry(95.0))


class TissueMissingError(ValueError):
    """A configured tissue has no voxels in a subject's ground truth."""


class BiomarkerMetric:
    """Measure enabled biomarkers per tissue on label volumes (D,H,W) with per-slice spacing (dz, dy, dx)."""

    def __init__(self, func: Mapping[str, bool], tissues: Mapping | Sequence, representative_slice: bool = False,
                 thickness_percentile: float = 95.0) -> None:
        unknown = [k for k in func if k not in BIOMARKERS]
        if unknown:
            raise ValueError(f"metric#func names unknown biomarkers {unknown}; choose from {list(BIOMARKERS)}.")
        registry = _registry(float(thickness_percentile))
        self.functions = {k: registry[k] for k, on in func.items() if on}
        if not self.functions:
            raise ValueError(f"metric#func enables no biomarker; set some of {list(BIOMARKERS)} to true.")
        if isinstance(tissues, Mapping):
            self.tissues = {int(k): str(v) for k, v in tissues.items()}
        else:
            self.tissues = {int(t): f"tissue_{int(t)}" for t in tissues}
        if not self.tissues:
            raise ValueError("metric#tissues is empty; list the label ids to measure, e.g. {\"1\": \"femoral\"}.")
        self.representative_slice = as_bool(representative_slice, "metric#representative_slice")

    def pick_slice(self, gt: np.ndarray, meta_slice: int | None) -> int:
        """Representative slice: the metadata's index when given, else the slice with the most tissue voxels."""
        if meta_slice is not None:
            return int(meta_slice)
        return int(np.argmax(np.isin(gt, list(self.tissues)).reshape(gt.shape[0], -1).sum(axis=1)))

    def measure(self, label: np.ndarray, maps: Mapping[str, np.ndarray],
                slice_spacings: Sequence[Sequence[float]]) -> dict[str, dict[str, float]]:
        """Label (D,H,W) -> {tissue name: {biomarker value name: value}}."""
        out = {}
        for tid, name in self.tissues.items():
            mask = label == tid
            values: dict[str, float] = {}
            for fn in self.functions.values():
                values.update(fn(mask, maps, slice_spacings))
            out[name] = values
        return out

    def compare(self, subject: str, pred: np.ndarray, gt: np.ndarray, maps: Mapping[str, np.ndarray],
                slice_spacings: Sequence[Sequence[float]], meta_slice: int | None = None) -> list[dict]:
        """Prediction and ground truth (D,H,W) of one subject -> rows (subject, tissue, biomarker, pred, gt, diff)."""
        if pred.shape != gt.shape:
            raise ValueError(f"subject {subject}: prediction {pred.shape} and ground truth {gt.shape} differ in shape.")
        for tid, name in self.tissues.items():
            if not (gt == tid).any():
                raise TissueMissingError(f"subject {subject}, label tissue {tid} ({name}): no voxels in the ground "
                                         "truth; fix the label or drop the tissue from metric#tissues.")
        spacings = list(slice_spacings)
        if self.representative_slice:
            z = self.pick_slice(gt, meta_slice)
            if not 0 <= z < gt.shape[0]:
                raise TissueMissingError(f"subject {subject}, metadata_for_ml.json slice: {z} is outside the volume's "
                                         f"{gt.shape[0]} slices; fix the index (0-based).")
            pred, gt, spacings = pred[z:z + 1], gt[z:z + 1], spacings[z:z + 1]
            maps = {k: v[z:z + 1] for k, v in maps.items()}
        p, g = self.measure(pred, maps, spacings), self.measure(gt, maps, spacings)
        rows = []
        for tissue in g:
            for key, gv in g[tissue].items():
                pv = p[tissue][key]
                diff = pv - gv
                rows.append({"subject": subject, "tissue": tissue, "biomarker": key, "prediction": pv,
                             "ground_truth": gv, "difference": diff, "abs_difference": abs(diff),
                             "relative_difference_percent": 100.0 * diff / gv if gv else math.nan})
        return rows


def measure_prediction(metric: BiomarkerMetric, subject: str, pred: np.ndarray, maps: Mapping[str, np.ndarray],
                       slice_spacings: Sequence[Sequence[float]], meta_slice: int | None = None) -> list[dict]:
    """Biomarkers of a prediction without ground truth (label-free inference), one row per tissue and biomarker.

    Args:
        metric: the biomarker metric (``build_biomarker_metric``).
        subject: the subject id written into every row.
        pred: predicted label volume (D, H, W) of tissue ids.
        maps: quantitative maps by name ("t1rho", "t2"), each (D, H, W).
        slice_spacings: per slice (dz, dy, dx) in mm.
        meta_slice: with ``metric.representative_slice``, the metadata's slice index (0-based); None = the slice
            with the most predicted tissue.

    Returns:
        Rows {"subject", "tissue", "biomarker", "prediction"}.
    """
    spacings = list(slice_spacings)
    if metric.representative_slice:
        z = metric.pick_slice(pred, meta_slice)
        pred, spacings, maps = pred[z:z + 1], spacings[z:z + 1], {k: v[z:z + 1] for k, v in maps.items()}
    values = metric.measure(pred, maps, spacings)
    return [{"subject": subject, "tissue": tissue, "biomarker": key, "prediction": float(v)}
            for tissue, d in values.items() for key, v in d.items()]


def build_biomarker_metric(config: Mapping) -> BiomarkerMetric:
    """The factory: {"func": {name: bool}, "tissues": ..., "representative_slice": bool, ...} -> BiomarkerMetric."""
    if "func" not in config:
        raise ValueError(f"metric config needs a 'func' dict of biomarkers to enable ({list(BIOMARKERS)}).")
    return BiomarkerMetric(config["func"], config.get("tissues", {}), config.get("representative_slice", False),
                           config.get("thickness_percentile", 95.0))


def summarize_rows(rows: list[dict]) -> dict:
    """Rows from compare() -> {tissue: {biomarker: n, mean_difference (bias), sd, mean_abs, mean_abs_rel %}}."""
    groups: dict = defaultdict(list)
    for r in rows:
        groups[(r["tissue"], r["biomarker"])].append(r)
    out: dict = defaultdict(dict)
    for (tissue, key), rs in sorted(groups.items()):
        d = np.array([r["difference"] for r in rs], float)
        rel = np.array([abs(r["relative_difference_percent"]) for r in rs], float)
        d, rel = d[np.isfinite(d)], rel[np.isfinite(rel)]
        out[tissue][key] = {
            "n": len(rs), "mean_ground_truth": float(np.nanmean([r["ground_truth"] for r in rs])),
            "mean_prediction": float(np.nanmean([r["prediction"] for r in rs])),
            "mean_difference": float(d.mean()) if d.size else math.nan,
            "sd_difference": float(d.std()) if d.size else math.nan,
            "mean_abs_difference": float(np.abs(d).mean()) if d.size else math.nan,
            "mean_abs_relative_difference_percent": float(rel.mean()) if rel.size else math.nan,
        }
    return dict(out)


__all__ = [
    "BIOMARKERS",
    "BiomarkerMetric",
    "TissueMissingError",
    "build_biomarker_metric",
    "measure_prediction",
    "summarize_rows",
]
