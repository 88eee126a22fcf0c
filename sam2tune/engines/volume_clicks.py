"""The 3D click protocol: propagate, correct the slice with the largest error, re-propagate from it.

Per object and round: the slice with the most wrong voxels (``sam2tune.prompts.error_slice``) gets an error-centre
click (``error_click``: positive on a miss, negative on a false positive), added to the clicks already on that slice;
that slice becomes the object's key (SAM2's conditioning frame) and propagation re-runs both ways from it, with the
object's other prompted slices applied when propagation reaches them.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.inferers import Inferer
from torch import nn

from sam2tune.engines.interactive import _count
from sam2tune.networks.propagator import ObjectPrompt, propagate_volume
from sam2tune.prompts.corrections import error_click, error_slice
from sam2tune.utils.dist import unwrap


def _add_click(prompts: list[ObjectPrompt], k: int, xy: np.ndarray, label: float) -> list[ObjectPrompt]:
    """Object prompts + a click on slice k -> new list whose first prompt (the key) is slice k with that click."""
    old = next((p for p in prompts if int(p.slice) == k), None)
    points = [list(map(float, pt)) for pt in (old.points or [])] if old is not None else []
    labels = [int(v) for v in (old.point_labels or [])] if old is not None else []
    new = ObjectPrompt(k, box=None if old is None else old.box, points=points + [[float(xy[0]), float(xy[1])]],
                       point_labels=labels + [int(label)])
    return [new] + [p for p in prompts if int(p.slice) != k]


class VolumeClickProtocolInferer(Inferer):
    """Whole-volume click protocol for SAM2 propagation; per-object IoU / Dice after each round in ``last``.

    Args:
        num_classes: channels of the returned score map (label values 0..num_classes - 1).
        chunk_size: frames per encoder batch.
        max_clicks: corrective clicks per object (one per round; 20 = the usual NoC cap).

    Returns (when called): (1, num_classes, D, H, W) scores after the last round, as ``VolumeInferer`` returns.
    """

    def __init__(self, num_classes: int = 14, chunk_size: int = 16, max_clicks: int = 20) -> None:
        self.num_classes, self.chunk_size, self.max_clicks = num_classes, chunk_size, _count(max_clicks, "max_clicks")
        self.last: dict = {}

    def __call__(self, inputs: torch.Tensor, network: nn.Module, prompts, object_ids, label: torch.Tensor | None = None) -> torch.Tensor:
        """(1, 1, D, H, W) volume + per-object prompts + label (1, 1, D, H, W) -> (1, num_classes, D, H, W)."""
        if label is None:
            raise ValueError("The click protocol needs the label: use VolumePromptPrepareBatch(pass_label=True).")
        volume = inputs[0].permute(1, 0, 2, 3)  # (D, 1, H, W)
        truth_map = np.asarray(label[0, 0].detach().cpu())
        out = torch.full((1, self.num_classes, *volume.shape[:1], *volume.shape[-2:]), -1024.0, device=inputs.device)
        out[:, 0] = 0.0
        if not prompts:
            self.last = {"iou": np.zeros((0, self.max_clicks + 1)), "dice": np.zeros((0, self.max_clicks + 1))}
            return out
        prompts = [list(p) for p in prompts]
        truths = [truth_map == organ for organ in object_ids]
        ious = np.zeros((len(prompts), self.max_clicks + 1))
        dices = np.zeros_like(ious)
        net = unwrap(network)
        for r in range(self.max_clicks + 1):
            with torch.no_grad():
                logits, _ = propagate_volume(net, volume, prompts, self.chunk_size, "both")
            preds = (logits > 0).cpu().numpy()
            for o, (pred, truth) in enumerate(zip(preds, truths, strict=True)):
                inter, total = float((pred & truth).sum()), float(pred.sum() + truth.sum())
                ious[o, r] = inter / max(total - inter, 1.0)
                dices[o, r] = 2 * inter / max(total, 1.0)
                if r < self.max_clicks:
                    k = error_slice(pred, truth)
                    if k is not None:
                        xy, lab = error_click(pred[k], truth[k])
                        prompts[o] = _add_click(prompts[o], k, xy, lab)
        for o, organ in enumerate(object_ids):
            out[0, organ] = logits[o].float()
        self.last = {"iou": ious, "dice": dices, "item": [0] * len(prompts), "object": [int(v) for v in object_ids]}
        return out


__all__ = ["VolumeClickProtocolInferer"]
