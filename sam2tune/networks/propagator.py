"""3D propagation through slices with SAM2's own memory (memory attention + memory encoder + object pointers).

The slices of a volume are SAM2 video frames, fed as tensors (never through JPEG folders). Objects (organs) are the
batch dimension, and each object runs on its own time axis: step 0 is its prompted key slice, step s is slice
``start + s`` (forward) or ``start - s`` (backward). So all objects advance together in one batched
``SAM2Base._track_step`` per step even when their key slices differ, and SAM2's memory bank (indexed by step) is
shared by construction. Both directions start from the prompted slice, so slices before the prompt are segmented too.
Slices where an object is absent come out empty through SAM2's object-score head (mask logits set to -1024).

Works on a ``SAM2Segmenter`` (its ``sam`` is the SAM2Base, its channel adapter maps 1-channel CT to RGB), so one
network with one fine-tuning strategy serves 2D and 3D.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sam2tune.networks.track_step import grouped_step

NO_OBJECT_LOGIT = -1024.0  # what SAM2 writes into masks of absent objects (sam2_base.NO_OBJ_SCORE)


@dataclass
class ObjectPrompt:
    """A prompt for one object on one slice, in input pixel coordinates of that slice (x = column, y = row).

    Attributes:
        slice: index of the slice the prompt is on.
        box: xyxy box, or None.
        points: (P, 2) xy clicks, or None.
        point_labels: (P,) labels of `points`, 1 positive / 0 negative; all positive when omitted.
        mask: (H, W) binary mask prompt, or None (used alone: SAM2 then skips its decoder on that slice).
        mask_logits: (h, w) SAM low-resolution mask logits (h = w = image_size / 4) of an earlier prediction on this
            slice, fed back with the clicks as SAM's mask prompt (SAM2VideoPredictor's ``prev_sam_mask_logits``);
            needs points, excludes ``mask``.

    Raises:
        ValueError: when none of box, points and mask is given, or ``mask_logits`` comes without points or with
            a mask.
    """

    slice: int
    box: Sequence[float] | None = None  # xyxy
    points: Sequence[Sequence[float]] | None = None  # (P, 2) xy
    point_labels: Sequence[int] | None = None  # (P,) 1 positive / 0 negative
    mask: np.ndarray | torch.Tensor | None = None  # (H, W) binary
    mask_logits: torch.Tensor | None = None  # (h, w) low-res logits fed back

    def __post_init__(self) -> None:
        if self.box is None and self.points is None and self.mask is None:
            raise ValueError(f"Prompt on slice {self.slice} has no box, points or mask: give at least one.")
        if self.points is not None and self.point_labels is None:
            self.point_labels = [1] * len(self.points)
        if self.mask_logits is not None and (self.points is None or self.mask is not None):
            raise ValueError(f"Prompt on slice {self.slice}: fed-back mask_logits go with clicks (points) and "
                             "without a mask prompt, as in SAM2's video predictor.")


@dataclass
class FrameFeatures:
    """SAM2 backbone features of N frames, as ``SAM2Base._prepare_backbone_features`` lays them out.

    Attributes:
        feats: per feature level, the (HW, N, C) maps of all frames.
        pos: per level, one (HW, 1, C) positional map (the same for every frame, expanded on use).
        sizes: per level, its (h, w).
    """

    feats: list[torch.Tensor]
    pos: list[torch.Tensor]  # (HW, 1, C): identical for every frame, expanded on use
    sizes: list[tuple[int, int]]

    def select(self, idx: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Gather the features of some frames, one per batch entry.

        Args:
            idx: (B,) long frame indices (repeats allowed), on the features' device.

        Returns:
            (per-level features (HW, B, C), per-level positional maps (HW, B, C)).
        """
        feats = [f.index_select(1, idx) for f in self.feats]
        pos = [p.expand(-1, idx.numel(), -1) for p in self.pos]
        return feats, pos


def encode_frames(segmenter, frames: torch.Tensor, chunk_size: int | None = None) -> FrameFeatures:
    """Encode frames through the segmenter's channel adapter and SAM2's image encoder.

    Args:
        segmenter: a ``SAM2Segmenter``.
        frames: (N, C, H, W) frames in [0, 1].
        chunk_size: frames per encoder pass (memory bound); None = all at once.

    Returns:
        The features of all N frames.
    """
    sam = segmenter.sam
    feats, pos, sizes = [], None, None
    step = chunk_size or frames.shape[0]
    for start in range(0, frames.shape[0], step):
        x = segmenter.preprocess(frames[start : start + step])
        _, vision, vision_pos, sizes = sam._prepare_backbone_features(sam.forward_image(x))
        feats.append(vision)
        pos = pos or [p[:, :1] for p in vision_pos]
    return FrameFeatures([torch.cat(level, 1) for level in zip(*feats, strict=True)], pos, sizes)


def track_objects(
    segmenter,
    features: FrameFeatures,
    frame_table: torch.Tensor,
    init_prompts: list[ObjectPrompt],
    step_prompts: dict[int, list[ObjectPrompt | None]] | None = None,
    input_hw: tuple[int, int] | None = None,
    keep_steps: int | None = None,
    high_res: bool = False,
    candidates: bool = False,
    return_low_res: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Track O objects over S steps with SAM2's memory, all objects batched in one track step per step.

    Args:
        segmenter: a ``SAM2Segmenter``.
        features: the encoded frames (``encode_frames``).
        frame_table: (O, S) long: the frame (index into `features`) object o sees at step s; -1 once past the volume
            end (that object then re-uses a valid frame and its outputs are to be ignored).
        init_prompts: one prompt per object for step 0 (mask prompts, box / point prompts and clicks with fed-back
            ``mask_logits`` may be mixed).
        step_prompts: {step: per-object prompt or None}: extra (correction) prompts met on the way (box / points,
            with or without fed-back ``mask_logits``).
        input_hw: (H, W) of the input slices the prompts' pixel coordinates refer to; None = the model size.
        keep_steps: drop memory older than this many steps (inference); None keeps all (training needs it for
            backward).
        high_res: return masks at model resolution instead of SAM2's low-res logits (image_size / 4).
        candidates: also return SAM2's 3 candidate masks at model resolution and their predicted IoUs (for the loss).
        return_low_res: also return SAM2's low-res logits (O, S, S_model / 4, S_model / 4), last (what a correction
            feeds back as ``ObjectPrompt.mask_logits``).

    Returns:
        (mask logits (O, S, h, w), object-score logits (O, S)); with ``candidates=True`` also candidate masks
        (O, S, 3, S_model, S_model) and their predicted IoUs (O, S, 3); with ``return_low_res`` then the low-res
        logits.
    """
    sam = segmenter.sam
    n_obj, n_steps = frame_table.shape
    device = features.feats[-1].device
    h, w = input_hw or (segmenter.image_size, segmenter.image_size)
    scale = (segmenter.image_size / w, segmenter.image_size / h)
    memory: dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    masks, scores, multi, ious, lows = [], [], [], [], []
    for s in range(n_steps):
        idx = frame_table[:, s]
        idx = torch.where(idx >= 0, idx, frame_table[:, 0]).to(device)  # finished objects idle on a valid frame
        feats, pos = features.select(idx)
        if s == 0:
            out = grouped_step(sam, feats, pos, features.sizes, 0, list(init_prompts), scale, memory, n_steps)
            memory["cond_frame_outputs"][0] = out
        else:
            extra = (step_prompts or {}).get(s) or [None] * n_obj
            out = grouped_step(sam, feats, pos, features.sizes, s, list(extra), scale, memory, n_steps)
            memory["non_cond_frame_outputs"][s] = out
            if keep_steps is not None:
                memory["non_cond_frame_outputs"].pop(s - keep_steps, None)
        masks.append(out["pred_masks_high_res" if high_res else "pred_masks"][:, 0])
        scores.append(out["object_score_logits"][:, 0])
        if return_low_res:
            lows.append(out["pred_masks"][:, 0])
        if candidates:
            multi.append(out["multi_masks_high_res"])
            ious.append(out["ious"])
        for key in ("multi_masks_high_res", "ious") + (("pred_masks_high_res",) if keep_steps is not None else ()):
            out.pop(key, None)  # memory attention only needs the memory features and pointers
    result = (torch.stack(masks, 1), torch.stack(scores, 1))
    if candidates:
        result += (torch.stack(multi, 1), torch.stack(ious, 1))
    return result + (torch.stack(lows, 1),) if return_low_res else result


def _memory_horizon(sam) -> int:
    """How many past steps SAM2 may read (mask memories and object pointers)."""
    return max(sam.num_maskmem * max(sam.memory_temporal_stride_for_eval, 1), sam.max_obj_ptrs_in_encoder) + 1


def propagate_volume(
    segmenter,
    volume: torch.Tensor,
    prompts: Sequence[Sequence[ObjectPrompt]],
    chunk_size: int = 16,
    directions: str = "both",
    return_low_res: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Segment every object through a volume: prompts on key slices, propagated by SAM2's memory.

    Each object's first prompt is its key slice; propagation runs forward to the last slice and backward to the
    first ("both"), or "forward" only. Further prompts of an object refine the slices they sit on when reached.
    Slices an object never reaches hold -1024.

    Args:
        segmenter: a ``SAM2Segmenter``.
        volume: (D, C, H, W) volume in [0, 1].
        prompts: per object, a non-empty list of ObjectPrompt (slice coordinates in input pixels).
        chunk_size: slices per encoder pass and per upsampling pass.
        directions: "both" or "forward".
        return_low_res: also return SAM2's low-res logits (O, D, S_model / 4, S_model / 4), -1024 where never
            reached: what a correction on a slice feeds back (``ObjectPrompt.mask_logits``).

    Returns:
        (logits (O, D, H, W) at input resolution, object-score logits (O, D)), plus the low-res logits with
        ``return_low_res``.

    Raises:
        ValueError: for a volume that is not 4D or is empty, an unknown `directions`, an object without prompts,
            or a prompt on a slice outside the volume.
    """
    if volume.ndim != 4:
        raise ValueError(f"propagate_volume expects a (D, C, H, W) volume, got shape {tuple(volume.shape)}.")
    if directions not in ("both", "forward"):
        raise ValueError(f"directions must be 'both' or 'forward', got {directions!r}.")
    depth, _, h, w = volume.shape
    if depth == 0 or h == 0 or w == 0:
        raise ValueError(f"Empty volume (shape {tuple(volume.shape)}): nothing to propagate.")
    if not prompts or any(not p for p in prompts):
        raise ValueError("Every object needs at least one prompt (a list of ObjectPrompt per object).")
    for o, plist in enumerate(prompts):
        for p in plist:
            if not 0 <= int(p.slice) < depth:
                raise ValueError(
                    f"Object {o}: prompt on slice {p.slice} is outside the volume (slices 0..{depth - 1})."
                )
    features = encode_frames(segmenter, volume, chunk_size)
    n_obj, device = len(prompts), volume.device
    starts = torch.tensor([int(p[0].slice) for p in prompts])
    low = None
    scores = torch.full((n_obj, depth), NO_OBJECT_LOGIT, device=device)
    for sign in (1, -1) if directions == "both" else (1,):
        n_steps = int((depth - starts).max() if sign > 0 else (starts + 1).max())
        table = starts[:, None] + sign * torch.arange(n_steps)[None]
        table = torch.where((table >= 0) & (table < depth), table, torch.full_like(table, -1))
        extra: dict[int, list] = {}
        for o, plist in enumerate(prompts):
            for p in plist[1:]:
                s = (int(p.slice) - int(starts[o])) * sign
                if 0 < s < n_steps:
                    extra.setdefault(s, [None] * n_obj)[o] = p
        masks, obj_scores = track_objects(
            segmenter, features, table, [p[0] for p in prompts], extra, (h, w), _memory_horizon(segmenter.sam)
        )
        if low is None:
            low = torch.full((n_obj, depth, *masks.shape[-2:]), NO_OBJECT_LOGIT, device=device, dtype=masks.dtype)
        valid = table >= 0
        o_idx, s_idx = valid.nonzero(as_tuple=True)
        low[o_idx, table[o_idx, s_idx]] = masks[o_idx.to(masks.device), s_idx.to(masks.device)]
        scores[o_idx, table[o_idx, s_idx]] = obj_scores[o_idx, s_idx].to(scores.dtype)
    logits = torch.cat(
        [
            F.interpolate(low[:, k : k + chunk_size].float(), size=(h, w), mode="bilinear", align_corners=False)
            for k in range(0, depth, chunk_size)
        ],
        1,
    )
    return (logits, scores, low) if return_low_res else (logits, scores)


def logits_to_labels(logits: torch.Tensor, object_ids: Sequence[int], threshold: float = 0.0) -> torch.Tensor:
    """Turn per-object logits into one label map: each voxel takes the object of its highest logit.

    Args:
        logits: (O, D, H, W) per-object logits (``propagate_volume``).
        object_ids: the label value of each object.
        threshold: a voxel whose highest logit is not above this is background (0).

    Returns:
        (D, H, W) int64 label map on the logits' device.
    """
    best, arg = logits.max(0)
    ids = torch.as_tensor(list(object_ids), device=logits.device, dtype=torch.int64)
    return torch.where(best > threshold, ids[arg], torch.zeros_like(arg))


__all__ = [
    "FrameFeatures",
    "ObjectPrompt",
    "encode_frames",
    "logits_to_labels",
    "propagate_volume",
    "track_objects",
]
