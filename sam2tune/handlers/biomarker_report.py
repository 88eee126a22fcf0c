"""Knee evaluation: put per-instance slice predictions back into volumes, measure biomarkers, write CSV/JSON/SEG.

Each evaluator item is one (subject, slice, tissue, instance) with a box prompt; this handler pastes the binary
predictions (resized back to the slice grid) into a label volume per subject, then compares prediction and ground
truth biomarkers through the metric factory and writes, under ``output_dir``:

- ``biomarkers_per_subject.csv``: subject, tissue, biomarker, prediction, ground_truth, difference, ...
- ``biomarkers_per_tissue.csv``: bias, sd, mean absolute (and relative) difference per tissue and biomarker
- ``per_volume.csv``: 3D Dice per subject and tissue
- ``summary.json``: adds "biomarkers", "volume_dice" and "skipped_subjects" (merged into an existing summary.json)
- ``seg/<subject>.dcm``: the assembled prediction as DICOM SEG referencing the subject's MR series
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict

import numpy as np
import torch
from ignite.engine import Engine, Events

from sam2tune.data.knee import KneeDataError, load_knee_subject, load_metadata
from sam2tune.io.dicom_seg import write_dicom_seg
from sam2tune.metrics.factory import BiomarkerMetric, TissueMissingError, build_biomarker_metric, summarize_rows
from sam2tune.metrics.volume import dice_iou
from sam2tune.utils.atomic import atomic_write_csv, atomic_write_json
from sam2tune.utils.dist import is_rank0
from sam2tune.utils.flags import as_bool

logger = logging.getLogger(__name__)


def _value(batch, key: str, i: int):
    v = batch[i].get(key) if isinstance(batch, list) else batch[key][i]
    return v.item() if isinstance(v, torch.Tensor) else v


class KneeBiomarkerReport:
    """Ignite handler for a SupervisedEvaluator over ``knee_slice_datalist(mode="eval")`` items.

    Args:
        output_dir: where the files go (usually <output_dir>/eval).
        dataset_dir: the knee dataset the items came from (volumes, maps and metadata are re-read from it).
        metric: a factory config dict ({"func": ..., "tissues": ..., "representative_slice": ...}) or a metric.
        write_seg: write each subject's assembled prediction as DICOM SEG.
    """

    def __init__(self, output_dir: str, dataset_dir: str, metric: dict | BiomarkerMetric,
                 write_seg: bool | str = True) -> None:
        # as_bool: `--write_seg false` on the bundle CLI arrives as the (truthy) string "false"
        self.output_dir, self.dataset_dir, self.write_seg = (str(output_dir), str(dataset_dir),
                                                             as_bool(write_seg, "write_seg"))
        self.metric = metric if isinstance(metric, BiomarkerMetric) else build_biomarker_metric(metric)
        self.preds: dict[str, list[tuple[int, int, np.ndarray]]] = defaultdict(list)

    def attach(self, engine: Engine) -> None:
        """Reset at start, collect each iteration, measure and write at completion."""
        engine.add_event_handler(Events.STARTED, lambda e: self.preds.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _collect(self, engine: Engine) -> None:
        batch = engine.state.batch
        for i, out in enumerate(engine.state.output):
            subject = str(_value(batch, "subject", i))
            pred = out["pred"].detach().cpu().float()
            self.preds[subject].append((int(_value(batch, "slice", i)), int(_value(batch, "class_id", i)),
                                        pred.reshape(pred.shape[-2:]).numpy() > 0.5))

    def assemble(self, subject: str, shape: tuple[int, int, int]) -> np.ndarray:
        """Collected binary slice predictions of one subject -> label volume (D,H,W) on the original grid."""
        volume = np.zeros(shape, np.uint8)
        for z, cls, mask in self.preds[subject]:
            resized = torch.nn.functional.interpolate(torch.from_numpy(mask[None, None]).float(), size=shape[1:],
                                                      mode="nearest")[0, 0].numpy() > 0.5
            # where two tissues' predictions overlap, the first keeps the voxel (labels are exclusive)
            volume[z][resized & (volume[z] == 0)] = cls
        return volume

    def _write(self, engine: Engine) -> None:
        if not is_rank0() or not self.preds:
            return
        os.makedirs(self.output_dir, exist_ok=True)
        meta_ml, meta_stats = load_metadata(self.dataset_dir)
        rows, dice_rows, skipped = [], [], []
        for subject in sorted(self.preds):
            try:
                s = load_knee_subject(self.dataset_dir, subject, meta_ml, meta_stats)
                pred = self.assemble(subject, s.label.shape)
                spacings = [(float(m["slice_thickness"]), *(float(v) for v in m["pixel_spacing"]))
                            for m in s.meta_stats]
                rows += self.metric.compare(subject, pred, s.label, s.maps, spacings, s.meta_ml.get("slice"))
            except (KneeDataError, TissueMissingError) as err:
                logger.warning("Biomarkers: skipping %s", err)
                skipped.append({"subject": subject, "error": str(err)})
                continue
            for tid, name in self.metric.tissues.items():
                p, g = pred == tid, s.label == tid
                dice_rows.append({"subject": subject, "tissue": name,
                                  "dice": dice_iou(int((p & g).sum()), int(p.sum()), int(g.sum()))[0],
                                  "gt_voxels": int(g.sum()), "pred_voxels": int(p.sum())})
            if self.write_seg and pred.any():
                write_dicom_seg(pred, s.files, os.path.join(self.output_dir, "seg", f"{subject}.dcm"),
                                self.metric.tissues, series_description=f"sam2tune {subject}")
        summary_path = os.path.join(self.output_dir, "summary.json")
        summary = {}
        if os.path.isfile(summary_path):  # SegmentationReport's per-slice summary, written just before
            with open(summary_path) as fh:
                summary = json.load(fh)
        summary["skipped_subjects"] = skipped
        if rows:
            atomic_write_csv(os.path.join(self.output_dir, "biomarkers_per_subject.csv"), rows)
            per_tissue = summarize_rows(rows)
            atomic_write_csv(os.path.join(self.output_dir, "biomarkers_per_tissue.csv"),
                             [{"tissue": t, "biomarker": b, **v} for t, d in per_tissue.items() for b, v in d.items()])
            atomic_write_csv(os.path.join(self.output_dir, "per_volume.csv"), dice_rows)
            summary["biomarkers"] = per_tissue
            summary["biomarker_settings"] = {"func": list(self.metric.functions), "tissues": self.metric.tissues,
                                             "representative_slice": self.metric.representative_slice}
            by_tissue = defaultdict(list)
            for r in dice_rows:
                by_tissue[r["tissue"]].append(r["dice"])
            summary["volume_dice"] = {t: float(np.nanmean(v)) for t, v in by_tissue.items()}
        atomic_write_json(summary, summary_path)
        logger.info("Biomarkers for %d subject(s) (%d skipped) -> %s", len(self.preds) - len(skipped), len(skipped),
                    self.output_dir)


__all__ = ["KneeBiomarkerReport"]
