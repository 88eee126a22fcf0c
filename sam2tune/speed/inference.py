"""Inference costs that should not repeat themselves: MC dropout with one encoding, 3D propagation beside Meta's
``SAM2VideoPredictor`` (same weights, same volume, same boxes, frames fed as tensors), and how propagation grows with
objects and slices.
"""

from __future__ import annotations

import time
from unittest import mock

import numpy as np
import torch

from sam2tune.networks import SAM2Segmenter
from sam2tune.networks.mc_dropout import mc_dropout_predict
from sam2tune.networks.propagator import ObjectPrompt, propagate_volume
from sam2tune.speed.propagation import time_propagation


def _timed(fn, device: torch.device, repeats: int) -> list[float]:
    """Seconds of `repeats` calls of fn() after one untimed warm-up call."""
    times = []
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return times[1:]


def mc_dropout_row(variant: str, image_size: int, device: torch.device, samples: int = 10,
                   repeats: int = 3) -> dict:
    """Seconds for ``samples`` MC-dropout passes on one image: re-encoding every pass vs one shared encoding.

    Args:
        variant: SAM2 variant.
        image_size: model input size.
        device: where to run.
        samples: stochastic passes (the issue's 10).
        repeats: timed runs of each (median reported).

    Returns:
        {"name", "samples", "reencode_s", "encode_once_s", "speedup", "max_abs_diff"} (the difference of the two
        mean probabilities for the same random state: the outputs match).
    """
    torch.manual_seed(0)
    net = SAM2Segmenter(variant, image_size, pretrained_checkpoint=None, dropout=0.1, warn_random_init=False)
    net = net.to(device).eval()
    x = torch.rand(1, 3, image_size, image_size, device=device)
    boxes = torch.tensor([[image_size * 0.25, image_size * 0.25, image_size * 0.7, image_size * 0.7]], device=device)
    out = {}
    for reuse in (False, True):
        torch.manual_seed(1)
        out[reuse] = mc_dropout_predict(net, samples, x, boxes=boxes, reuse_encoding=reuse)[0]
    times = {reuse: _timed(lambda r=reuse: mc_dropout_predict(net, samples, x, boxes=boxes, reuse_encoding=r),
                           device, repeats) for reuse in (False, True)}
    slow, fast = float(np.median(times[False])), float(np.median(times[True]))
    return {"name": f"MC dropout, {samples} samples, one {image_size} px image", "samples": samples,
            "reencode_s": slow, "encode_once_s": fast, "speedup": slow / fast,
            "max_abs_diff": float((out[True] - out[False]).abs().max())}


def _boxes(size: int, n: int) -> list[list[float]]:
    return [[size * 0.3 + i, size * 0.3, size * 0.6 + i, size * 0.6] for i in range(n)]


def predictor_row(variant: str, image_size: int, device: torch.device, size: int, depth: int, objects: int,
                  repeats: int = 1) -> dict:
    """sam2tune's batched propagation vs ``SAM2VideoPredictor`` on the same volume, weights and boxes.

    The predictor is built from the same config (``sam2.build_sam.build_sam2_video_predictor``), given the
    segmenter's SAM2 weights, and fed the segmenter's own preprocessed frames as tensors (its frame loader is
    replaced for the call: no JPEG folder). Both propagate forward and backward from the middle slice, encoder
    included.

    Args:
        variant: SAM2 variant.
        image_size: model input size.
        device: where to run.
        size: slice height and width.
        depth: slices.
        objects: box-prompted objects on the middle slice.
        repeats: timed runs of each.

    Returns:
        {"name", "sam2tune_s", "predictor_s", "speedup" (predictor / sam2tune), "mask_agreement" (mean IoU of the
        two binary outputs over objects)}.
    """
    import sam2.sam2_video_predictor as video_module
    from sam2.build_sam import build_sam2_video_predictor

    from sam2tune.networks.build import sam2_config_name

    torch.manual_seed(0)
    net = SAM2Segmenter(variant, image_size, in_channels=1, pretrained_checkpoint=None, warn_random_init=False)
    net = net.to(device).eval()
    predictor = build_sam2_video_predictor(sam2_config_name(variant), None, device=str(device),
                                           hydra_overrides_extra=[f"++model.image_size={image_size}"])
    predictor.load_state_dict(net.sam.state_dict(), strict=True)
    volume = torch.rand(depth, 1, size, size, device=device)
    key, boxes = depth // 2, _boxes(size, objects)
    with torch.inference_mode():
        frames = net.preprocess(volume)  # (D, 3, S, S), ImageNet-normalised: what the predictor's loader makes

    def ours() -> torch.Tensor:
        with torch.inference_mode():
            return propagate_volume(net, volume, [[ObjectPrompt(key, box=b)] for b in boxes])[0] > 0

    def theirs() -> torch.Tensor:
        with torch.inference_mode(), mock.patch.object(video_module, "load_video_frames",
                                                       lambda **kw: (frames, size, size)):
            state = predictor.init_state(video_path="<tensors>")
            for i, b in enumerate(boxes):
                predictor.add_new_points_or_box(state, frame_idx=key, obj_id=i, box=np.asarray(b, np.float32))
            out = torch.zeros(objects, depth, size, size, dtype=torch.bool, device=device)
            for reverse in (False, True):
                for k, _, masks in predictor.propagate_in_video(state, reverse=reverse):
                    out[:, k] = masks[:, 0] > 0
            return out

    a, b = ours(), theirs()
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float().clamp(min=1)
    t_ours, t_theirs = _timed(ours, device, repeats), _timed(theirs, device, repeats)
    s_ours, s_theirs = float(np.median(t_ours)), float(np.median(t_theirs))
    return {"name": f"propagation {size}x{size}x{depth}, {objects} objects: sam2tune vs SAM2VideoPredictor",
            "sam2tune_s": s_ours, "predictor_s": s_theirs, "speedup": s_theirs / s_ours,
            "mask_agreement": float((inter / union).mean())}


def propagation_scaling(variant: str, image_size: int, device: torch.device, size: int,
                        objects: tuple[int, ...] = (1, 4, 13), depths: tuple[int, ...] = (16, 64, 128),
                        fixed_depth: int = 64, fixed_objects: int = 4, repeats: int = 1) -> list[dict]:
    """Seconds per volume as objects grow at a fixed depth, and as slices grow at fixed objects.

    Args:
        variant: SAM2 variant.
        image_size: model input size.
        device: where to run.
        size: slice height and width.
        objects: object counts at ``fixed_depth`` slices.
        depths: slice counts at ``fixed_objects`` objects.
        fixed_depth: the depth of the objects curve.
        fixed_objects: the object count of the slices curve.
        repeats: timed runs per point.

    Returns:
        One row per point: {"curve" ("objects" | "slices"), "objects", "depth", "seconds"}.
    """
    net = SAM2Segmenter(variant, image_size, in_channels=1, pretrained_checkpoint=None, warn_random_init=False)
    rows = []
    for curve, points in (("objects", [(o, fixed_depth) for o in objects]),
                          ("slices", [(fixed_objects, d) for d in depths])):
        for n_obj, depth in points:
            r = time_propagation(net, depth=depth, size=size, num_objects=n_obj, device=str(device),
                                 amp=device.type == "cuda", repeats=repeats)
            rows.append({"curve": curve, "objects": n_obj, "depth": depth, "seconds": r["seconds"]})
    return rows


__all__ = ["mc_dropout_row", "predictor_row", "propagation_scaling"]
