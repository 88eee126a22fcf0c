"""The 3D click protocol: propagate, correct the slice with the largest error, re-propagate from it.

Per object and round: the slice with the most wrong voxels (``sam2tune.prompts.error_slice``) gets an error-centre
click (``error_click``: positive on a miss, negative on a false positive), added to the clicks already on that slice,
with the slice's current low-res mask logits fed back as SAM's mask prompt (as SAM2's video predictor does); that
slice becomes the object's key (SAM2's conditioning frame) and propagation re-runs both ways from it, with the
object's other prompted slices applied when propagation reaches them.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.inferers import Inferer
from torch import nn

from sam2tune.engines.interactive import _count
from sam2tune.networks.propagator import propagate_volume
from sam2tune.prompts.corrections import error_click, error_slice
from sam2tune.prompts.objects import click_as_key
from sam2tune.utils.dist import unwrap


class VolumeClickProtocolInferer(Inferer):
    """Whole-volume click protocol for SAM2 propagation; per-object IoU / Dice after each round in ``last``.

    Called, it returns (1, num_classes, D, H, W) scores after the last round, as ``VolumeInferer`` does
    (``__call__``).

    Args:
        num_classes: channels of the returned score map (label values 0..num_classes - 1).
        chunk_size: frames per encoder batch.
        max_clicks: corrective clicks per object (one per round; 20 = the usual NoC cap), an int >= 0.

    Raises:
        ValueError: when ``max_clicks`` is not an integer >= 0.
    """

    def __init__(self, num_classes: int = 14, chunk_size: int = 16, max_clicks: int = 20) -> None:
        self.num_classes, self.chunk_size, self.max_clicks = num_classes, chunk_size, _count(max_clicks, "max_clicks")
        self.last: dict = {}

    def __call__(self, inputs: torch.Tensor, network: nn.Module, prompts, object_ids,
                 label: torch.Tensor | None = None) -> torch.Tensor:
        """Propagate, then correct and re-propagate ``max_clicks`` times; per-round IoU / Dice go to ``last``.

        ``last`` becomes {"iou": (O, max_clicks + 1), "dice": (O, max_clicks + 1), "item": [0] * O, "object": the
        organ ids} (round 0 = the first propagation); with no prompts, only empty (0, max_clicks + 1) "iou" /
        "dice" arrays.

        Args:
            inputs: (1, 1, D, H, W) volume in [0, 1].
            network: the SAM2Segmenter (wrapped or not).
            prompts: one list of ObjectPrompt per organ (``VolumePromptPrepareBatch``); the first one is the key.
            object_ids: the organs' label values, one per prompt list.
            label: (1, 1, D, H, W) organ ids, from ``VolumePromptPrepareBatch(pass_label=True)``.

        Returns:
            (1, num_classes, D, H, W) scores after the last round: channel 0 is 0, each prompted organ's channel its
            propagation logits (-1024 on slices it never reaches), other channels -1024.

        Raises:
            ValueError: when ``label`` is None, or a prompt lies outside the volume (``propagate_volume``).
        """
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
                logits, _, low = propagate_volume(net, volume, prompts, self.chunk_size, "both", return_low_res=True)
            preds = (logits > 0).cpu().numpy()
            for o, (pred, truth) in enumerate(zip(preds, truths, strict=True)):
                inter, total = float((pred & truth).sum()), float(pred.sum() + truth.sum())
                ious[o, r] = inter / max(total - inter, 1.0)
                dices[o, r] = 2 * inter / max(total, 1.0)
                if r < self.max_clicks:
                    k = error_slice(pred, truth)
                    if k is not None:
                        xy, lab = error_click(pred[k], truth[k])
                        prompts[o] = click_as_key(prompts[o], k, xy, lab, mask_logits=low[o, k])
        for o, organ in enumerate(object_ids):
            out[0, organ] = logits[o].float()
        self.last = {"iou": ious, "dice": dices, "item": [0] * len(prompts), "object": [int(v) for v in object_ids]}
        return out


__all__ = ["VolumeClickProtocolInferer"]
