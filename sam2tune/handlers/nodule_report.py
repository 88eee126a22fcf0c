"""Per-nodule evaluation report with calibration and uncertainty: per_nodule.csv, summary.json, qc/*.png."""

from __future__ import annotations

import logging
import math
import os
import time

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.metrics import compute_iou
from monai.metrics.meandice import compute_dice

from sam2tune.metrics.calibration import expected_calibration_error, pixel_errors, uncertainty_auroc
from sam2tune.metrics.summary import score_summary
from sam2tune.plots.uncertainty import save_uncertainty_overlay
from sam2tune.utils.atomic import atomic_write_csv, atomic_write_json
from sam2tune.utils.dist import is_rank0

logger = logging.getLogger(__name__)


def _get(item, key):
    v = item.get(key) if isinstance(item, dict) else None
    return v.detach().cpu() if isinstance(v, torch.Tensor) else v


class NoduleUncertaintyReport:
    """Collect Dice, IoU (MONAI), ECE and uncertainty AUROC per nodule from an evaluator using SplitUncertaintyd.

    Pooled ECE / AUROC (all pixels of all nodules) go to summary.json beside per-nodule means. Nodules whose
    prediction is empty are scored Dice 0 and counted in ``empty_predictions`` (with a warning), never hidden.

    Args:
        output_dir: folder for per_nodule.csv, summary.json and qc/.
        n_bins: ECE confidence bins.
        threshold: probability threshold of the binary prediction.
        num_overlays: QC figures written (centre slice of the first nodules).
        extra: constant fields copied into summary.json (e.g. {"mc_samples": 10}).
    """

    def __init__(self, output_dir: str, n_bins: int = 15, threshold: float = 0.5, num_overlays: int = 8,
                 extra: dict | None = None) -> None:
        self.output_dir, self.n_bins, self.threshold, self.num_overlays = (str(output_dir), n_bins, threshold,
                                                                           num_overlays)
        self.extra = extra or {}
        self.rows: list[dict] = []
        self._probs: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._uncs: list[np.ndarray] = []
        self._t0 = 0.0

    def attach(self, engine: Engine) -> None:
        """Reset at start, collect per iteration, write at completion."""
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.rows, self._probs, self._labels, self._uncs, self._t0 = [], [], [], [], time.perf_counter()

    def _collect(self, engine: Engine) -> None:
        batch, outputs = engine.state.batch, engine.state.output
        for i, out in enumerate(outputs):
            missing = [k for k in ("prob", "uncertainty", "pred", "label") if _get(out, k) is None]
            if missing:
                raise KeyError(f"NoduleUncertaintyReport needs {missing} in the evaluator output: "
                               "use MCDropoutInferer + SplitUncertaintyd.")
            prob, unc = _get(out, "prob").float(), _get(out, "uncertainty").float()
            pred, label = _get(out, "pred").float(), _get(out, "label").float()
            item = batch[i] if isinstance(batch, list) else {}
            ident = str(_get(item, "id") if _get(item, "id") is not None else f"item{len(self.rows):04d}")
            nodule = int(_get(item, "nodule")) if _get(item, "nodule") is not None else 0
            center = _get(item, "center")
            gt, npred = int(label.sum()), int(pred.sum())
            dice = float(compute_dice(pred[None], label[None], include_background=True, ignore_empty=True).mean())
            iou = float(compute_iou(pred[None], label[None], include_background=True, ignore_empty=True).mean())
            errors = pixel_errors(prob, label, self.threshold)
            row = {"id": ident, "nodule": nodule,
                   "center_x": float(center[0]) if center is not None else math.nan,
                   "center_y": float(center[1]) if center is not None else math.nan,
                   "center_z": float(center[2]) if center is not None else math.nan,
                   "gt_voxels": gt, "pred_voxels": npred, "dice": dice, "iou": iou,
                   "ece": expected_calibration_error(prob, label, self.n_bins, self.threshold),
                   "uncertainty_auroc": uncertainty_auroc(unc, errors), "mean_uncertainty": float(unc.mean()),
                   "error_fraction": float(errors.mean()), "empty_prediction": npred == 0 and gt > 0,
                   "empty_ground_truth": gt == 0}
            if row["empty_prediction"]:
                logger.warning("%s nodule %d: the prediction is empty (Dice 0) although the label has %d voxels.",
                               ident, nodule, gt)
            self.rows.append(row)
            self._probs.append(prob.numpy().ravel())
            self._labels.append(label.numpy().ravel().astype(np.uint8))
            self._uncs.append(unc.numpy().ravel())
            if len(self.rows) <= self.num_overlays and is_rank0():
                os.makedirs(os.path.join(self.output_dir, "qc"), exist_ok=True)
                image = _get(out, "image")
                mid = prob.shape[-3] // 2  # centre slice of the stack
                save_uncertainty_overlay(
                    os.path.join(self.output_dir, "qc", f"{ident}_nodule{nodule}.png".replace(os.sep, "_")),
                    image.reshape(-1, *image.shape[-2:])[mid].numpy(),
                    label.reshape(-1, *label.shape[-2:])[mid].numpy(),
                    prob.reshape(-1, *prob.shape[-2:])[mid].numpy(), unc.reshape(-1, *unc.shape[-2:])[mid].numpy(),
                    title=f"{ident} nodule {nodule}  Dice {dice:.3f}  ECE {row['ece']:.3f}  "
                          f"unc. AUROC {row['uncertainty_auroc']:.3f}",
                )

    def summary(self) -> dict:
        """Means over nodules with a non-empty label, and pooled (all-pixel) ECE and uncertainty AUROC."""
        scored = [r for r in self.rows if not r["empty_ground_truth"]]

        def col(k):
            v = np.array([r[k] for r in scored], dtype=float)
            return v[~np.isnan(v)]

        out = {"n": len(self.rows), **score_summary((r["dice"] for r in scored), (r["iou"] for r in scored)),
               "n_scored": len(scored),  # here: the nodules with a non-empty label
               "empty_predictions": sum(r["empty_prediction"] for r in self.rows),
               "empty_ground_truth": sum(r["empty_ground_truth"] for r in self.rows)}
        if self._probs:
            prob, label, unc = np.concatenate(self._probs), np.concatenate(self._labels), np.concatenate(self._uncs)
            out["ece"] = expected_calibration_error(prob, label, self.n_bins, self.threshold)
            out["uncertainty_auroc"] = uncertainty_auroc(unc, pixel_errors(prob, label, self.threshold))
        e, a = col("ece"), col("uncertainty_auroc")
        u = col("mean_uncertainty")  # ~1 bit (entropy) when the model says p ~ 0.5 everywhere, i.e. never learned
        out["mean_uncertainty"] = float(u.mean()) if u.size else math.nan
        out["mean_nodule_ece"] = float(e.mean()) if e.size else math.nan
        out["mean_nodule_uncertainty_auroc"] = float(a.mean()) if a.size else math.nan
        out["n_bins"], out["threshold"] = self.n_bins, self.threshold
        out.update(self.extra)
        out["seconds"] = time.perf_counter() - self._t0
        return out

    def _write(self, engine: Engine) -> None:
        if not is_rank0() or not self.rows:
            return
        os.makedirs(self.output_dir, exist_ok=True)
        atomic_write_csv(os.path.join(self.output_dir, "per_nodule.csv"), self.rows)
        summary = self.summary()
        atomic_write_json(summary, os.path.join(self.output_dir, "summary.json"))
        logger.info("Evaluation: %d nodules, mean Dice %.4f, IoU %.4f, ECE %.4f, uncertainty AUROC %.4f -> %s",
                    summary["n"], summary["mean_dice"], summary["mean_iou"], summary.get("ece", math.nan),
                    summary.get("uncertainty_auroc", math.nan), self.output_dir)
