"""Inferers for the 3D bundles: slice-window tracking with SAM2 memory (training), whole-volume propagation (eval).

Their batches come from ``sam2tune.engines.volume_batch``; the training loss is ``sam2tune.losses.PropagationLoss``.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from monai.inferers import Inferer
from torch import nn

from sam2tune.engines.interactive import _count
from sam2tune.networks.propagator import encode_frames, propagate_volume, track_objects
from sam2tune.prompts.corrections import error_click, error_slice
from sam2tune.prompts.objects import add_click
from sam2tune.utils.dist import unwrap


class SliceWindowInferer(Inferer):
    """Training inferer: encode the window frames, track the objects with SAM2 memory -> {"logits", "object_scores"}.

    Args:
        correction_rounds: corrective clicks per object after the first tracking pass (needs ``label=``, from
            ``SliceWindowPrepareBatch(pass_label=True)``). Each round clicks the window slice where the object's
            error is largest (``sam2tune.prompts.error_slice`` / ``error_click``), adds the click to that slice's
            prompts with that slice's low-res logits fed back as SAM's mask prompt (not detached, as SAM2's trainer
            does) and tracks the window again through SAM2's memory; the encoder runs once. The output then also
            holds every round under "rounds" (the last round at the top level) and PropagationLoss averages them.
            An int >= 0.

    Raises:
        ValueError: when ``correction_rounds`` is not an integer >= 0.
    """

    def __init__(self, correction_rounds: int = 0) -> None:
        self.correction_rounds = _count(correction_rounds, "correction_rounds")

    def __call__(self, inputs: torch.Tensor, network: nn.Module, frame_table, init_prompts, step_prompts=None,
                 label: torch.Tensor | None = None) -> dict:
        """Track the window's objects (and correct them, with ``correction_rounds``).

        Args:
            inputs: (N, 1, H, W) frames of all windows, in [0, 1] (``SliceWindowPrepareBatch``: N = B*T).
            network: the SAM2Segmenter (wrapped or not).
            frame_table: (O, T) frame index of each object's window slices.
            init_prompts: one ObjectPrompt per object on its first slice.
            step_prompts: {slice: [ObjectPrompt or None per object]}, prompts on later slices.
            label: (O, T, H, W) targets, needed for correction rounds.

        Returns:
            {"logits": (O, T, H, W), "object_scores": (O, T), "candidates": (O, T, 3, H, W), "ious": (O, T, 3),
            "low_res": (O, T, S/4, S/4)}: the chosen masks, object scores, SAM2's candidate masks and their
            predicted IoUs, SAM2's low-res logits (with rounds also "rounds", the list of every round's such dict).

        Raises:
            ValueError: when ``correction_rounds`` > 0 and no label is given.
        """
        net = unwrap(network)
        features = encode_frames(net, inputs)
        h, w = inputs.shape[-2:]
        if self.correction_rounds and label is None:
            raise ValueError("correction_rounds > 0 needs the targets: SliceWindowPrepareBatch(pass_label=True).")
        init, steps = list(init_prompts), {s: list(v) for s, v in (step_prompts or {}).items()}
        rounds = []
        for r in range(self.correction_rounds + 1):
            out = self._track(net, features, frame_table, init, steps, (h, w))
            rounds.append(out)
            if r == self.correction_rounds:
                break
            with torch.no_grad():
                pred = (out["logits"] > 0).cpu().numpy()
                truth = (label > 0.5).cpu().numpy()
            for o in range(len(init)):
                k = error_slice(pred[o], truth[o])
                if k is None:
                    continue
                xy, lab = error_click(pred[o, k], truth[o, k])
                fed = out["low_res"][o, k]  # this round's logits on slice k, fed back with the click (not detached)
                if k == 0:
                    init[o] = add_click(init[o], 0, xy, lab, mask_logits=fed)
                else:
                    row = steps.setdefault(k, [None] * len(init))
                    row[o] = add_click(row[o], k, xy, lab, mask_logits=fed)
        return {**rounds[-1], "rounds": rounds} if self.correction_rounds else rounds[0]

    @staticmethod
    def _track(net, features, frame_table, init, steps, hw) -> dict:
        h, w = hw
        masks, scores, cands, ious, low = track_objects(net, features, frame_table, init, steps, (h, w),
                                                        high_res=True, candidates=True, return_low_res=True)
        if masks.shape[-2:] != (h, w):
            masks = F.interpolate(masks, size=(h, w), mode="bilinear", align_corners=False)
            cands = F.interpolate(cands.flatten(1, 2), size=(h, w), mode="bilinear",
                                  align_corners=False).unflatten(1, cands.shape[1:3])
        return {"logits": masks, "object_scores": scores, "candidates": cands, "ious": ious, "low_res": low}


class VolumeInferer(Inferer):
    """Propagate every prompted organ through the volume -> per-class scores whose argmax is the label map.

    Channel 0 is 0 (the decision threshold); organs not prompted stay at -1024. Each call's time is appended to
    ``times`` (seconds), for the volume report.

    Args:
        num_classes: channels of the returned score map (label values 0..num_classes - 1).
        chunk_size: frames per encoder batch.
        directions: "both" (forward and backward from each key slice) or "forward" (``propagate_volume``; any other
            value raises when a volume with prompts is propagated).
    """

    def __init__(self, num_classes: int = 14, chunk_size: int = 16, directions: str = "both") -> None:
        self.num_classes, self.chunk_size, self.directions = num_classes, chunk_size, directions
        self.times: list[float] = []

    def __call__(self, inputs: torch.Tensor, network: nn.Module, prompts, object_ids) -> torch.Tensor:
        """Propagate the prompted organs of one volume.

        Args:
            inputs: (1, 1, D, H, W) volume.
            network: the SAM2Segmenter (wrapped or not).
            prompts: one list of ObjectPrompt per organ (``VolumePromptPrepareBatch``).
            object_ids: the organs' label values, one per prompt list.

        Returns:
            (1, num_classes, D, H, W) scores: channel 0 is 0, each prompted organ's channel its propagation logits
            (-1024 on slices it never reaches), other channels -1024.

        Raises:
            ValueError: when ``inputs`` is not one (1, 1, D, H, W) volume, ``directions`` is not "both" or
                "forward", or a prompt lies outside the volume (``propagate_volume``).
        """
        if inputs.ndim != 5 or inputs.shape[0] != 1:
            raise ValueError(f"VolumeInferer takes one (1, 1, D, H, W) volume, got shape {tuple(inputs.shape)}.")
        inputs = inputs[0].permute(1, 0, 2, 3)  # slices become SAM2 frames: (D, 1, H, W)
        depth, _, h, w = inputs.shape
        out = torch.full((1, self.num_classes, depth, h, w), -1024.0, device=inputs.device)
        out[:, 0] = 0.0
        if inputs.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        if prompts:
            with torch.no_grad():
                logits, _ = propagate_volume(unwrap(network), inputs, prompts, self.chunk_size, self.directions)
            for o, organ in enumerate(object_ids):
                out[0, organ] = logits[o].float()
        if inputs.is_cuda:
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - t0)
        return out


__all__ = ["SliceWindowInferer", "VolumeInferer"]
