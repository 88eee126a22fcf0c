"""Evaluation report: per-image Dice/IoU CSV, summary.json (overall and per class) and QC overlay PNGs."""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict

import torch
from ignite.engine import Engine, Events
from monai.metrics import compute_iou
from monai.metrics.meandice import compute_dice

from sam2tune.metrics.summary import score_summary
from sam2tune.plots.overlays import save_overlay
from sam2tune.utils.atomic import atomic_write_csv, atomic_write_json
from sam2tune.utils.dist import is_rank0

logger = logging.getLogger(__name__)


def _item(batch: dict | list, key: str, i: int):
    # MONAI engines decollate the batch into a list of dicts at ITERATION_COMPLETED (decollate=True).
    v = batch[i].get(key) if isinstance(batch, list) else (batch.get(key)[i] if key in batch else None)
    return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v


class SegmentationReport:
    """Collect per-item Dice/IoU from a MONAI evaluator's (post-processed) output and write the report at the end.

    Files in `output_dir`: per_image.csv, per_class.csv, summary.json, qc/<id>.png (first `num_overlays` items).
    Items whose ground truth is empty are listed with NaN metrics and counted, never averaged as perfect.
    Items that carry a "raters" entry (REFUGE datalists) get a `raters` column: how many rater masks their truth
    is the mean of.
    """

    def __init__(self, output_dir: str, num_overlays: int = 8, class_names: dict | None = None,
                 id_key: str = "id") -> None:
        self.output_dir, self.num_overlays, self.id_key = str(output_dir), num_overlays, id_key
        self.class_names = {int(k): v for k, v in (class_names or {}).items()}
        self.rows: list[dict] = []
        self._t0 = 0.0

    def attach(self, engine: Engine) -> None:
        """Reset at start, collect each iteration, write at completion."""
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.rows, self._t0 = [], time.perf_counter()

    def _collect(self, engine: Engine) -> None:
        batch, outputs = engine.state.batch, engine.state.output
        os.makedirs(os.path.join(self.output_dir, "qc"), exist_ok=True)
        for i, out in enumerate(outputs):
            pred, label = out["pred"].float(), out["label"].float()
            empty = float(label.sum()) == 0
            dice = float(compute_dice(pred[None], label[None], include_background=True, ignore_empty=True).mean())
            iou = float(compute_iou(pred[None], label[None], include_background=True, ignore_empty=True).mean())
            ident = _item(batch, self.id_key, i)
            ident = str(ident if ident is not None else f"item{len(self.rows):04d}")
            cls = _item(batch, "prompt_class", i)
            cls = int(cls) if cls is not None else 1
            row = {"id": ident, "class": cls, "class_name": self.class_names.get(cls, str(cls)), "dice": dice,
                   "iou": iou, "gt_pixels": int(label.sum()), "pred_pixels": int(pred.sum()),
                   "empty_ground_truth": empty}
            raters = _item(batch, "raters", i)  # multi-rater truth (REFUGE): how many raters it is the mean of
            if raters is not None:
                row["raters"] = int(raters)
            self.rows.append(row)
            if len(self.rows) <= self.num_overlays and is_rank0():
                save_overlay(
                    os.path.join(self.output_dir, "qc", f"{ident}_c{cls}.png".replace(os.sep, "_")),
                    out["image"].detach().cpu().numpy(), label.cpu().numpy(), pred.cpu().numpy(),
                    box=_item(batch, "box", i), points=_item(batch, "point_coords", i),
                    point_labels=_item(batch, "point_labels", i), title=f"{ident}  Dice {dice:.3f}  IoU {iou:.3f}",
                )

    def summary(self) -> dict:
        """Overall and per-class means over items with non-empty ground truth."""
        def stats(rows):
            return {"n": len(rows), **score_summary((r["dice"] for r in rows), (r["iou"] for r in rows))}
        by_class = defaultdict(list)
        for r in self.rows:
            by_class[r["class_name"]].append(r)
        out = stats(self.rows)
        out["empty_ground_truth"] = sum(r["empty_ground_truth"] for r in self.rows)
        out["per_class"] = {k: stats(v) for k, v in sorted(by_class.items())}
        out["seconds"] = time.perf_counter() - self._t0
        out["seconds_per_item"] = out["seconds"] / max(1, len(self.rows))
        return out

    def _write(self, engine: Engine) -> None:
        if not is_rank0() or not self.rows:
            return
        os.makedirs(self.output_dir, exist_ok=True)
        fields = list(dict.fromkeys(k for r in self.rows for k in r))  # every column any row has, in order
        atomic_write_csv(os.path.join(self.output_dir, "per_image.csv"), self.rows, fields)  # missing cells: ""
        summary = self.summary()
        columns = ["n", "n_scored", "mean_dice", "std_dice", "median_dice", "mean_iou"]
        atomic_write_csv(os.path.join(self.output_dir, "per_class.csv"),
                         [{"class": k, **{c: s[c] for c in columns}} for k, s in summary["per_class"].items()],
                         ["class", *columns])
        atomic_write_json(summary, os.path.join(self.output_dir, "summary.json"))
        logger.info("Evaluation: %d items, mean Dice %.4f, mean IoU %.4f -> %s", summary["n"], summary["mean_dice"],
                    summary["mean_iou"], self.output_dir)
