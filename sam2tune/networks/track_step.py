"""One SAM2 tracking step for a batch of objects whose prompts differ in kind (the inner loop of propagation).

SAM2 takes a mask prompt, clicks with a fed-back mask, or clicks / boxes alone for a whole batch at once, so a step
whose objects mix them runs one ``SAM2Base._track_step`` per kind, each reading only its objects' memories, and the
outputs are merged back in object order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from sam2tune.networks.propagator import ObjectPrompt


def _point_inputs(prompts: list[ObjectPrompt | None], scale: tuple[float, float], device) -> dict | None:
    """Per-object prompts (None = no prompt) -> SAM2 point_inputs in model pixels; boxes are points labelled 2/3."""
    rows = []
    for p in prompts:
        coords, labels = [], []
        if p is not None and p.box is not None:
            x0, y0, x1, y1 = (float(v) for v in p.box)
            coords += [[x0, y0], [x1, y1]]
            labels += [2, 3]
        if p is not None and p.points is not None:
            coords += [[float(x), float(y)] for x, y in p.points]
            labels += [int(v) for v in p.point_labels]
        rows.append((coords, labels))
    width = max(len(c) for c, _ in rows)
    if width == 0:
        return None
    coords = torch.zeros(len(rows), width, 2)
    labels = torch.full((len(rows), width), -1, dtype=torch.int32)  # -1 = padding ("not a point")
    for i, (c, lab) in enumerate(rows):
        if c:
            coords[i, : len(c)] = torch.tensor(c)
            labels[i, : len(lab)] = torch.tensor(lab, dtype=torch.int32)
    coords = coords * torch.tensor(scale)
    return {"point_coords": coords.to(device), "point_labels": labels.to(device)}


def _mask_inputs(prompts: list[ObjectPrompt], image_size: int, device) -> torch.Tensor:
    masks = torch.stack([torch.as_tensor(np.asarray(p.mask), dtype=torch.float32) for p in prompts])[:, None]
    return (
        (F.interpolate(masks, size=(image_size, image_size), mode="bilinear", align_corners=False) > 0.5)
        .float()
        .to(device)
    )


def _fed_back(prompts: list[ObjectPrompt], size: int, device) -> torch.Tensor:
    """Fed-back low-res logits of a batch of prompts -> (B, 1, size, size), clamped as SAM2's video predictor does."""
    logits = torch.stack([torch.as_tensor(p.mask_logits, dtype=torch.float32).reshape(p.mask_logits.shape[-2:])
                          for p in prompts])[:, None].to(device)
    if logits.shape[-2:] != (size, size):
        logits = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
    return logits.clamp(-32.0, 32.0)


def _kind(p: ObjectPrompt | None) -> int:
    """0 = mask prompt, 1 = clicks with fed-back logits, 2 = box / clicks / nothing: one SAM2 call per kind."""
    if p is not None and p.mask is not None:
        return 0
    return 1 if p is not None and p.mask_logits is not None else 2


def _select_memory(memory: dict, idx: torch.Tensor) -> dict:
    """SAM2's memory dict restricted to some objects (what memory attention reads: memories and object pointers)."""
    def pick(out: dict) -> dict:
        return {"maskmem_features": out["maskmem_features"].index_select(0, idx.to(out["maskmem_features"].device)),
                "maskmem_pos_enc": [e.index_select(0, idx.to(e.device)) for e in out["maskmem_pos_enc"]],
                "obj_ptr": out["obj_ptr"].index_select(0, idx.to(out["obj_ptr"].device))}

    return {key: {t: pick(o) for t, o in memory[key].items()} for key in ("cond_frame_outputs",
                                                                          "non_cond_frame_outputs")}


def grouped_step(sam, feats: list[torch.Tensor], pos: list[torch.Tensor], sizes: list[tuple[int, int]], step: int,
                 prompts: list[ObjectPrompt | None], scale: tuple[float, float], memory: dict,
                 num_frames: int) -> dict:
    """One tracking step whose objects may carry different prompt kinds: one SAM2 call per kind, merged in order.

    Args:
        sam: the ``SAM2Base``.
        feats: per feature level, the (HW, O, C) features of each object's frame at this step.
        pos: per level, the (HW, O, C) positional maps.
        sizes: per level, its (h, w).
        step: the step index (0 = the conditioning step of every object).
        prompts: per object, its prompt at this step or None.
        scale: (x, y) factors from input pixels to model pixels.
        memory: SAM2's ``{"cond_frame_outputs", "non_cond_frame_outputs"}`` of the earlier steps (all objects).
        num_frames: steps in the track (SAM2's temporal position encoding).

    Returns:
        SAM2's step output for all O objects in order (pred_masks (O, 1, s, s), pred_masks_high_res, obj_ptr,
        object_score_logits, maskmem_features / maskmem_pos_enc, multi_masks_high_res (O, 3, S, S), ious (O, 3)).
    """
    device = feats[-1].device
    groups = [[i for i, p in enumerate(prompts) if _kind(p) == k] for k in range(3)]
    kinds = [k for k, g in enumerate(groups) if g]
    outs = []
    for k in kinds:
        g = groups[k]
        gi = torch.tensor(g, device=device)
        sub = [prompts[i] for i in g]
        sub_feats, sub_pos = [f.index_select(1, gi) for f in feats], [p[:, : len(g)] for p in pos]
        sub_memory = memory if len(kinds) == 1 or step == 0 else _select_memory(memory, gi)
        points = None if k == 0 or all(p is None for p in sub) else _point_inputs(sub, scale, device)
        masks_in = _mask_inputs(sub, sam.image_size, device) if k == 0 else None
        fed = _fed_back(sub, sam.sam_prompt_encoder.mask_input_size[0], device) if k == 1 else None
        outs.append(_step(sam, sub_feats, sub_pos, sizes, step, step == 0, points, masks_in, sub_memory, num_frames,
                          fed))
    return outs[0] if len(outs) == 1 else _merge(outs, [groups[k] for k in kinds], len(prompts))


def _step(sam, feats, pos, sizes, step, is_init, point_inputs, mask_inputs, memory, num_frames,
          fed_back=None) -> dict:
    """One SAM2 tracking step for a batch of objects (SAM2Base.track_step, keeping object scores in training too)."""
    out, sam_outputs, _, _ = sam._track_step(
        step, is_init, feats, pos, sizes, point_inputs, mask_inputs, memory, num_frames, False, fed_back
    )
    _, multi_high_res, ious, low_res, high_res, obj_ptr, obj_score = sam_outputs
    out.update(pred_masks=low_res, pred_masks_high_res=high_res, obj_ptr=obj_ptr, object_score_logits=obj_score)
    # SAM2 picks one of its 3 candidate masks by predicted IoU on tracking frames: training must supervise all
    # candidates and the IoU head (as SAM2's own loss does), so keep them; single-mask steps repeat their one mask.
    k = 3 if multi_high_res.shape[1] == 1 else 1
    out.update(multi_masks_high_res=multi_high_res.repeat(1, k, 1, 1), ious=ious.float().repeat(1, k))
    sam._encode_memory_in_output(feats, sizes, point_inputs, True, high_res, obj_score, out)
    return out


def _merge(outs: list[dict], groups: list[list[int]], n: int) -> dict:
    """Outputs of object sub-batches -> one output in the original object order."""
    order = torch.tensor([i for g in groups for i in g])
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(n)

    def cat(values):
        if isinstance(values[0], list):
            return [cat([v[i] for v in values]) for i in range(len(values[0]))]
        return torch.cat(values, 0)[inverse.to(values[0].device)]

    keys = (
        "pred_masks",
        "pred_masks_high_res",
        "obj_ptr",
        "object_score_logits",
        "maskmem_features",
        "maskmem_pos_enc",
        "multi_masks_high_res",
        "ious",
    )
    return {k: cat([o[k] for o in outs]) for k in keys}


__all__ = ["grouped_step"]
