"""Click-protocol report: summary.json (Dice/IoU after k clicks, NoC, NoF), per_object_clicks.csv, clicks_curve.png."""

from __future__ import annotations

import csv
import io
import logging
import os

import numpy as np
from ignite.engine import Engine, Events

from sam2tune.metrics.clicks import NOC_THRESHOLDS, click_summary, clicks_to_reach
from sam2tune.plots.clicks import plot_click_curves
from sam2tune.utils.atomic import atomic_write_json, atomic_write_text
from sam2tune.utils.dist import is_rank0

logger = logging.getLogger(__name__)

PROTOCOLS = {
    "oracle": "first prompt, then error-centre clicks (largest error region, farthest from its border; positive on a "
              "miss, negative on a false positive; needs the ground truth), previous mask fed back",
    "suggest": "first prompt, then a click where the app suggests (the model's own uncertainty, no ground truth), "
               "labelled with the truth at that pixel, previous mask fed back",
    "boundary": "first prompt, then a click on a random pixel of the predicted border, labelled with the truth at "
                "that pixel, previous mask fed back (baseline)",
}


class ClickProtocolReport:
    """Collect the per-object curves of a ``ClickProtocolInferer`` and write the click-protocol files at the end.

    Args:
        inferer: the evaluator's ``sam2tune.engines.ClickProtocolInferer``.
        output_dir: folder for summary.json, per_object_clicks.csv and clicks_curve.png.
        model_name: the curve's label in the plot and summary.
        id_key: data key naming each item in the CSV.
    """

    def __init__(self, inferer, output_dir: str, model_name: str = "model", id_key: str = "id") -> None:
        self.inferer, self.output_dir, self.model_name, self.id_key = inferer, str(output_dir), model_name, id_key
        self.rows: list[tuple[str, np.ndarray, np.ndarray]] = []
        self.in_error: list[np.ndarray] = []

    def attach(self, engine: Engine) -> None:
        """Reset at start, collect after every iteration, write when the evaluation completes."""
        engine.add_event_handler(Events.STARTED, lambda _: (self.rows.clear(), self.in_error.clear()))
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def collect(self, engine: Engine) -> None:
        """Take the last batch's curves from the inferer, each row named by its item's id (and object, in 3D)."""
        last = self.inferer.last
        batch = engine.state.batch if isinstance(engine.state.batch, list) else None
        for j in range(len(last.get("iou", []))):
            if np.isnan(last["iou"][j]).any():
                continue  # empty ground truth: nothing to click on
            i = int(last["item"][j]) if "item" in last else j
            item = batch[i] if batch is not None and i < len(batch) else {}
            ident = (str(item.get(self.id_key, item.get("case", f"item{len(self.rows)}"))) if isinstance(item, dict)
                     else f"item{len(self.rows)}")
            if "object" in last:
                ident = f"{ident}/{last['object'][j]}"
            self.rows.append((ident, last["iou"][j], last["dice"][j]))
            if "in_error" in last:
                self.in_error.append(last["in_error"][j])

    def write(self, engine: Engine) -> dict | None:
        """Write the three files (rank 0) and return the summary."""
        if not is_rank0() or not self.rows:
            if is_rank0():
                logger.warning("Click protocol: no object with a non-empty label was evaluated; nothing written.")
            return None
        os.makedirs(self.output_dir, exist_ok=True)
        ious = np.stack([r[1] for r in self.rows])
        dices = np.stack([r[2] for r in self.rows])
        k = ious.shape[1] - 1
        user = getattr(self.inferer, "user", "oracle")
        summary = {"model": self.model_name, "user": user, **click_summary(ious, dices, k), "protocol": PROTOCOLS[user]}
        if self.in_error:
            hits = np.concatenate(self.in_error)
            hits = hits[~np.isnan(hits)]
            summary["clicks_in_error"] = round(float(hits.mean()), 4) if len(hits) else None
            summary["clicks_counted"] = int(len(hits))
        atomic_write_json(summary, os.path.join(self.output_dir, "summary.json"))
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["id", *[f"noc_{int(t * 100)}" for t in NOC_THRESHOLDS], *[f"iou_{c}" for c in range(k + 1)],
                         *[f"dice_{c}" for c in range(k + 1)]])
        nocs = [clicks_to_reach(ious, t, k) for t in NOC_THRESHOLDS]
        for j, (ident, iou, dice) in enumerate(self.rows):
            writer.writerow([ident, *[int(n[j]) for n in nocs], *[f"{v:.5f}" for v in iou],
                             *[f"{v:.5f}" for v in dice]])
        atomic_write_text(os.path.join(self.output_dir, "per_object_clicks.csv"), buf.getvalue())
        plot_click_curves({self.model_name: summary["dice_at_clicks"]},
                          os.path.join(self.output_dir, "clicks_curve.png"))
        logger.info("Click protocol (%d objects): Dice %s -> %s after %d clicks, NoC@85 %.2f, NoC@90 %.2f",
                    len(self.rows), summary["dice_at_clicks"][0], summary["dice_at_clicks"][-1], k,
                    summary["noc_85"], summary["noc_90"])
        return summary


__all__ = ["ClickProtocolReport"]
