"""Why does 3D propagation fail? Per-object tables and object-identity checks for SAM2 memory tracking.

Two questions a volume's Dice cannot answer: does each organ's own propagated mask (before the argmax between organs)
follow the organ, and does SAM2's memory tell the organs apart at all? After the key slice an object has no prompt, so
everything that makes organ A's mask differ from organ B's must pass through the memory (mask memory + object
pointers) and memory attention. If the memory-conditioned features of two objects on the next slice are nearly equal,
the tracker predicts the same mask for both, whatever the decoder has learned.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sam2tune.networks.propagator import ObjectPrompt, encode_frames, propagate_volume
from sam2tune.networks.track_step import grouped_step


def relative_spread(x: torch.Tensor) -> torch.Tensor:
    """Measure how far apart per-object tensors are, relative to their size.

    Args:
        x: per-object tensors (O, ...), flattened per object.

    Returns:
        (O, O) float matrix of ``||x_i - x_j|| / mean(||x_i||, ||x_j||)`` (0 on the diagonal).
    """
    flat = x.flatten(1).float()
    norms = flat.norm(dim=1)
    return torch.cdist(flat, flat) / ((norms[:, None] + norms[None]) / 2).clamp(min=1e-12)


@torch.no_grad()
def memory_identity(
    segmenter, volume: torch.Tensor, prompts: Sequence[ObjectPrompt], step: int = 1
) -> dict[str, torch.Tensor]:
    """Measure how distinguishable the objects are to SAM2's tracker one tracking step after the key slice.

    Spreads near 0 between two objects mean the tracker sees the same thing for both and will predict the same mask.

    Args:
        segmenter: a ``SAM2Segmenter``.
        volume: (D, C, H, W) volume in [0, 1].
        prompts: one box and/or points prompt per object, all on the same key slice k.
        step: which slice to compare on, k + step (negative = backward); not 0.

    Returns:
        {"memory": (O, O) ``relative_spread`` of the key slice's mask memory and object pointers,
        "conditioned": (O, O) ``relative_spread`` of the memory-conditioned features of slice k + step}.

    Raises:
        ValueError: when the prompts sit on several slices, one is a mask prompt, `step` is 0, or slice k + step
            is outside the volume.
    """
    keys = {int(p.slice) for p in prompts}
    if len(keys) != 1:
        raise ValueError(f"memory_identity compares objects prompted on one key slice, got slices {sorted(keys)}.")
    if any(p.mask is not None for p in prompts):
        raise ValueError("memory_identity takes box or point prompts (mask prompts bypass SAM2's decoder).")
    k = keys.pop()
    if step == 0:
        raise ValueError("step must be non-zero: the key slice itself is prompted, not tracked.")
    target = k + step
    if not 0 <= target < volume.shape[0]:
        raise ValueError(
            f"Slice {target} (key {k} + step {step}) is outside the volume (slices 0..{volume.shape[0] - 1})."
        )
    sam, n_obj, device = segmenter.sam, len(prompts), volume.device
    features = encode_frames(segmenter, volume[[k, target]])
    h, w = volume.shape[-2:]
    scale = (segmenter.image_size / w, segmenter.image_size / h)
    memory: dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    feats, pos = features.select(torch.zeros(n_obj, dtype=torch.long, device=device))
    out = grouped_step(sam, feats, pos, features.sizes, 0, list(prompts), scale, memory, 2)
    memory["cond_frame_outputs"][0] = out
    mem = torch.cat([out["maskmem_features"].flatten(1), out["obj_ptr"].flatten(1)], 1)
    feats, pos = features.select(torch.ones(n_obj, dtype=torch.long, device=device))
    # the propagator runs both directions on one increasing step axis (the frame table reverses), so a slice `step`
    # away in either direction is tracking step |step| from the key slice's step 0
    conditioned = sam._prepare_memory_conditioned_features(
        frame_idx=abs(step),
        is_init_cond_frame=False,
        current_vision_feats=feats[-1:],
        current_vision_pos_embeds=pos[-1:],
        feat_sizes=features.sizes[-1:],
        output_dict=memory,
        num_frames=abs(step) + 1,
    )
    return {"memory": relative_spread(mem), "conditioned": relative_spread(conditioned)}


def lands_on(pred: np.ndarray, label: np.ndarray) -> tuple[int, int]:
    """Which label value a predicted mask mostly lies on.

    Args:
        pred: (H, W) bool mask.
        label: (H, W) label map of object ids (0 = background).

    Returns:
        (label value under most of the mask's voxels, how many of them); (-1, 0) for an empty mask.
    """
    values, counts = np.unique(label[pred], return_counts=True)
    if not len(values):
        return -1, 0
    return int(values[counts.argmax()]), int(counts.max())


@torch.no_grad()
def object_slice_table(
    segmenter,
    volume: torch.Tensor,
    label: np.ndarray,
    prompts: Sequence[Sequence[ObjectPrompt]],
    object_ids: Sequence[int],
) -> list[dict]:
    """Tabulate each object's own propagated mask per slice (no argmax between objects) against its label.

    Args:
        segmenter: a ``SAM2Segmenter``.
        volume: (D, C, H, W) volume in [0, 1].
        label: (D, H, W) label map of object ids.
        prompts: per object, its prompts (``propagate_volume``); the first one's slice is the key slice.
        object_ids: the label value of each object, in the order of `prompts`.

    Returns:
        One dict per object and slice where the label or the prediction (logit > 0) is non-empty: "organ",
        "slice", "offset" (from the key slice), "label_voxels", "pred_voxels", "dice", "object_score" (logit),
        "lands_on" / "lands_on_voxels" (``lands_on``: the label value most of the mask lies on; another organ's id
        there means the tracker jumped to that organ).
    """
    logits, scores = propagate_volume(segmenter, volume, prompts)
    rows = []
    for o, organ in enumerate(object_ids):
        key = int(prompts[o][0].slice)
        truth_all = label == organ
        for z in range(label.shape[0]):
            pred, truth = (logits[o, z] > 0).cpu().numpy(), truth_all[z]
            if not pred.any() and not truth.any():
                continue
            inter = int((pred & truth).sum())
            rows.append(
                {
                    "organ": int(organ),
                    "slice": z,
                    "offset": z - key,
                    "label_voxels": int(truth.sum()),
                    "pred_voxels": int(pred.sum()),
                    "dice": 2 * inter / (int(pred.sum()) + int(truth.sum())),
                    "object_score": float(scores[o, z]),
                    **dict(zip(("lands_on", "lands_on_voxels"), lands_on(pred, label[z]), strict=True)),
                }
            )
    return rows


__all__ = ["lands_on", "memory_identity", "object_slice_table", "relative_spread"]
