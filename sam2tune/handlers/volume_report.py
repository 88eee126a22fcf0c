"""Evaluation report for 3D multi-organ segmentation: per-slice / per-volume / per-organ CSVs, summary.json, QC PNGs."""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict

import numpy as np
import torch
from ignite.engine import Engine, Events

from sam2tune.metrics.volume import dice_iou, global_scores, organ_counts, slice_scores
from sam2tune.plots.overlays import save_overlay
from sam2tune.utils.atomic import atomic_write_csv, atomic_write_json
from sam2tune.utils.dist import is_rank0

logger = logging.getLogger(__name__)


def _as_labels(x) -> np.ndarray:
    """(C, D, H, W) one-hot / scores or (1, D, H, W) labels -> (D, H, W) int label map."""
    x = torch.as_tensor(x).detach().cpu()
    return (x.argmax(0) if x.shape[0] > 1 else x[0]).numpy().astype(np.int32)


def _nanmean(values) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


class VolumeReport:
    """Collect each evaluated volume and write the report under `output_dir` when the evaluation ends.

    Args:
        output_dir: report folder (per_volume.csv, per_slice.csv, per_organ.csv, summary.json, qc/).
        organ_names: {id: name} of the organs scored (ids absent from a volume's label and prediction are skipped).
        inferer: the VolumeInferer, whose per-volume timings give mean_seconds_per_volume.
        skipped: [{"case", "reason"}] cases left out before evaluation (screening), listed in summary.json.
        split: name of the data split evaluated (e.g. "test" held out, or "val" = the model-selection split),
            recorded in summary.json so a number is never read as held-out when it is not.
        num_qc_slices: overlay PNGs per volume (slices spread over the labelled range).
    """

    def __init__(self, output_dir: str, organ_names: dict, inferer=None, skipped: list | None = None,
                 num_qc_slices: int = 3, split: str | None = None) -> None:
        self.output_dir, self.inferer, self.skipped, self.num_qc = (str(output_dir), inferer, list(skipped or []),
                                                                    num_qc_slices)
        self.split = split
        self.organ_names = {int(k): str(v) for k, v in organ_names.items()}
        self._reset(None)

    def attach(self, engine: Engine) -> None:
        """Reset at start, collect every iteration, write at the end."""
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _reset(self, _engine) -> None:
        self.volume_rows, self.slice_rows, self.counts, self.cases = [], [], [], []
        self._t0 = len(self.inferer.times) if self.inferer is not None else 0

    def _collect(self, engine: Engine) -> None:
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        batch = engine.state.batch if isinstance(engine.state.batch, list) else [engine.state.batch]
        for out, item in zip(outputs, batch, strict=False):
            pred, label = _as_labels(out["pred"]), _as_labels(out["label"])
            case = str(item.get("case", f"case{len(self.cases)}"))
            ids = sorted(self.organ_names)
            counts = organ_counts(pred, label, ids)
            self.counts.append(counts)
            self.cases.append(case)
            for organ, (inter, ps, gs) in counts.items():
                if ps + gs == 0:
                    continue
                d, i = dice_iou(inter, ps, gs)
                self.volume_rows.append({"case": case, "organ": organ, "organ_name": self.organ_names[organ], "dice": d,
                                         "iou": i, "label_voxels": gs, "pred_voxels": ps})
            for row in slice_scores(pred, label, ids):
                self.slice_rows.append({"case": case, **row, "organ_name": self.organ_names[row["organ"]]})
            if self.num_qc and is_rank0():
                self._qc(case, np.asarray(torch.as_tensor(item["image"]).cpu())[0], label, pred)

    def _qc(self, case: str, image: np.ndarray, label: np.ndarray, pred: np.ndarray) -> None:
        ks = np.nonzero(label.reshape(label.shape[0], -1).any(1))[0]
        if not len(ks):
            return
        qc_dir = os.path.join(self.output_dir, "qc")
        os.makedirs(qc_dir, exist_ok=True)
        for k in np.unique(np.linspace(ks[0], ks[-1], self.num_qc + 2).round().astype(int)[1:-1]):
            save_overlay(os.path.join(qc_dir, f"{case}_slice{k:03d}.png"), image[k], label[k] > 0, pred[k] > 0,
                         title=f"{case} slice {k}: ground truth (green) vs prediction (red), all organs")

    def summary(self) -> dict:
        """Means per organ at volume, slice and global level, the overall means, timing and skipped cases."""
        by_organ = defaultdict(list)
        for r in self.volume_rows:
            by_organ[r["organ"]].append(r)
        slices = defaultdict(list)
        for r in self.slice_rows:
            slices[r["organ"]].append(r["dice"])
        glob = global_scores(self.counts)
        organs = {}
        for organ in sorted(by_organ):
            rows = [r for r in by_organ[organ] if r["label_voxels"] > 0]
            organs[self.organ_names[organ]] = {
                "organ": organ,
                "n_volumes": len(rows),
                "volume_dice": _nanmean([r["dice"] for r in rows]),
                "volume_iou": _nanmean([r["iou"] for r in rows]),
                "slice_dice": _nanmean(slices[organ]),
                "global_dice": glob[organ][0],
                "global_iou": glob[organ][1],
                "false_positive_volumes": len([r for r in by_organ[organ] if r["label_voxels"] == 0]),
            }
        times = self.inferer.times[self._t0 :] if self.inferer is not None else []
        scored = [o for o in organs.values() if o["n_volumes"]]
        return {
            "n": len(self.cases),
            "split": self.split,
            "cases": self.cases,
            "mean_dice": _nanmean([o["volume_dice"] for o in scored]),
            "mean_iou": _nanmean([o["volume_iou"] for o in scored]),
            "mean_slice_dice": _nanmean([o["slice_dice"] for o in scored]),
            "global_dice": _nanmean([o["global_dice"] for o in scored]),
            "mean_seconds_per_volume": float(np.mean(times)) if times else None,
            "organs": organs,
            "skipped": self.skipped,
        }

    def _write(self, _engine) -> None:
        if not is_rank0():
            return
        os.makedirs(self.output_dir, exist_ok=True)
        summary = self.summary()
        for name, rows in (("per_volume.csv", self.volume_rows), ("per_slice.csv", self.slice_rows)):
            atomic_write_csv(os.path.join(self.output_dir, name), rows)
        atomic_write_csv(os.path.join(self.output_dir, "per_organ.csv"),
                         [{"organ_name": k, **v} for k, v in summary["organs"].items()])
        atomic_write_json(summary, os.path.join(self.output_dir, "summary.json"))
        logger.info("Volume evaluation of %d cases: mean Dice %.4f, global Dice %.4f, %.3f s/volume, %d skipped -> %s",
                    summary["n"], summary["mean_dice"], summary["global_dice"],
                    summary["mean_seconds_per_volume"] or float("nan"), len(self.skipped), self.output_dir)


__all__ = ["VolumeReport"]
