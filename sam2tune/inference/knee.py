"""Knee inference on a new subject without a label: prompts JSON (or the learned prompt) -> label map + biomarkers.

Prompts use the abdomen bundle's format (sam2tune.inference.prompts.read_prompts), keyed by tissue name or
id; coordinates are pixels of the volume's slices (slice k, x = column, y = row):

```
{"femoral_cartilage": [{"slice": 2, "box": [10, 12, 30, 20]}, {"slice": 3, "box": [11, 12, 31, 21]}],
 "2": {"slice": 2, "points": [[20, 30]], "point_labels": [1]}}
```

Modes: "prompts" segments each prompted slice on its own (the way the bundle trains: one prompt per tissue instance
on a 2D slice); "propagate" runs SAM2's memory propagation through the whole volume from the prompted slices (as the
abdomen bundle); "prompt_free" runs every slice with the network's learned prompt token only. One learned token
cannot say which tissue it found, so prompt-free output is a single label 1 named "cartilage".
"""

from __future__ import annotations

import logging
import math
import os
import time

import numpy as np
import torch

from sam2tune.data.knee import MAPS, normalize_intensity, read_knee_input
from sam2tune.inference.outputs import write_volume_outputs
from sam2tune.inference.prompts import read_prompts
from sam2tune.io.volumes import Volume
from sam2tune.metrics.factory import build_biomarker_metric, measure_prediction
from sam2tune.networks.propagator import ObjectPrompt, logits_to_labels, propagate_volume
from sam2tune.utils.atomic import atomic_write_csv
from sam2tune.utils.dist import unwrap
from sam2tune.utils.flags import as_bool

logger = logging.getLogger(__name__)
PROMPT_FREE_TISSUES = {1: "cartilage"}


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _prompt_kwargs(p: ObjectPrompt, device: torch.device) -> dict:
    """One ObjectPrompt -> SAM2Segmenter keyword prompts with batch 1 (input pixel coordinates)."""
    kw = {}
    if p.box is not None:
        kw["boxes"] = torch.tensor([list(p.box)], dtype=torch.float32, device=device)
    if p.points is not None:
        kw["point_coords"] = torch.tensor([p.points], dtype=torch.float32, device=device)
        kw["point_labels"] = torch.tensor([p.point_labels], dtype=torch.int64, device=device)
    if p.mask is not None:
        kw["mask_prompt"] = torch.as_tensor(np.asarray(p.mask, np.float32), device=device)[None, None]
    return kw


def segment_prompted_slices(net, volume: torch.Tensor, ids: list[int], prompts: list[list[ObjectPrompt]],
                            threshold: float = 0.5) -> torch.Tensor:
    """(D, 1, H, W) volume in [0, 1] + per-tissue prompts -> labels (D, H, W); only prompted slices can be non-zero.

    Each slice is encoded once; every prompt on it is decoded alone, a tissue's prompts on one slice are united
    (max logit), and overlapping tissues go to the highest logit.
    """
    depth, _, h, w = volume.shape
    labels = torch.zeros((depth, h, w), dtype=torch.int64, device=volume.device)
    by_slice: dict[int, list[tuple[int, ObjectPrompt]]] = {}
    for o, plist in enumerate(prompts):
        for p in plist:
            by_slice.setdefault(int(p.slice), []).append((o, p))
    for z, items in sorted(by_slice.items()):
        image = volume[z : z + 1]
        features = net.encode(image)
        logits = torch.full((len(ids), 1, h, w), -1e4, device=volume.device)
        for o, p in items:
            out = net(image, features=features, **_prompt_kwargs(p, volume.device))[0, :1].float()
            logits[o] = torch.maximum(logits[o], out)
        labels[z] = logits_to_labels(logits, ids, _logit(threshold))[0]
    return labels


def segment_prompt_free(net, volume: torch.Tensor, threshold: float = 0.5, batch_size: int = 8) -> torch.Tensor:
    """(D, 1, H, W) volume in [0, 1] -> labels (D, H, W) of 0/1 from the learned prompt token alone (every slice)."""
    if getattr(net, "prompt_tokens", None) is None:
        raise ValueError("prompt_free needs a network with a learned prompt token (num_prompt_tokens > 0 in "
                         "network_def and a model.pt trained with it); give --prompts FILE instead.")
    out = [
        net(volume[k : k + batch_size])[:, 0].float() > _logit(threshold) for k in range(0, volume.shape[0], batch_size)
    ]
    return torch.cat(out).to(torch.int64)


def run_knee_inference(
    network,
    input_path: str,
    prompts: str | dict | None,
    output_dir: str,
    tissues: dict,
    metric: dict,
    device: str | torch.device = "cpu",
    amp: bool | str = False,
    prompt_free: bool | str = False,
    propagate: bool | str = False,
    dicom_seg: bool | str = True,
    threshold: float = 0.5,
    chunk_size: int = 16,
) -> dict:
    """Segment one subject without a label.

    Returns {"nifti", "dicom_seg", "biomarkers_csv", "mode", "tissues", "biomarkers", ...}.

    Writes under output_dir: <case>_seg.nii.gz (input grid), <case>_seg.dcm (DICOM input), <case>_biomarkers.csv
    (prediction only: there is no ground truth to compare with) and <case>_result.json.
    """
    prompt_free, propagate = as_bool(prompt_free, "prompt_free"), as_bool(propagate, "propagate")
    if prompt_free and prompts:
        raise ValueError("Give either --prompts FILE or --prompt_free true, not both.")
    if not prompt_free and not prompts:
        raise ValueError("Label-free inference needs --prompts FILE (tissue -> slice + box or points) or "
                         "--prompt_free true (learned prompt token); see the bundle's docs/README.md.")
    names = {int(k): str(v) for k, v in tissues.items()}
    subject = read_knee_input(str(input_path))
    depth = subject.image.shape[0]
    device = torch.device(device)
    if prompt_free:
        ids, plist, names, mode = [1], None, dict(PROMPT_FREE_TISSUES), "prompt_free"
    else:
        ids, plist = read_prompts(prompts, depth, names=names, kind="tissue", flag="--prompts")
        mode = "propagate" if propagate else "prompts"
    net = unwrap(network).to(device).eval()
    volume = torch.from_numpy(normalize_intensity(subject.image))[:, None].to(device)
    t0 = time.perf_counter()
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                enabled=as_bool(amp, "amp") and device.type == "cuda"):
        if prompt_free:
            labels = segment_prompt_free(net, volume, threshold, chunk_size)
        elif propagate:
            logits, _ = propagate_volume(net, volume, plist, chunk_size)
            labels = logits_to_labels(logits.float(), ids, _logit(threshold))
        else:
            labels = segment_prompted_slices(net, volume, ids, plist, threshold)
    labels = labels.cpu().numpy().astype(np.uint8)
    seconds = time.perf_counter() - t0
    case = subject.case
    ref = Volume(subject.image, np.eye(4), subject.spacing, str(input_path), "dicom" if subject.files else "image",
                 subject.files, subject.reference)
    result = {"input": str(input_path), "mode": mode, "seconds": seconds,
              "tissues": {names[i]: int((labels == i).sum()) for i in ids}}
    for name, voxels in result["tissues"].items():
        if voxels == 0:
            logger.warning("%s: no %s predicted; its biomarkers are NaN.", case, name)
    # biomarkers on the prediction: the tissues segmented, map statistics only for the maps the subject has
    func = {k: bool(v) and (k not in MAPS or k in subject.maps) for k, v in metric["func"].items()}
    dropped = [k for k, v in metric["func"].items() if v and not func[k]]
    if dropped:
        logger.warning("%s: no %s map next to the image, so %s biomarkers are left out.", case, "/".join(dropped),
                       dropped)
    measure = build_biomarker_metric({**metric, "func": func, "tissues": {i: names[i] for i in ids}})
    rows = measure_prediction(measure, case, labels, subject.maps, [subject.spacing] * depth)
    os.makedirs(output_dir, exist_ok=True)
    result["biomarkers_csv"] = atomic_write_csv(os.path.join(output_dir, f"{case}_biomarkers.csv"), rows,
                                                ["subject", "tissue", "biomarker", "prediction"])
    result["biomarkers"] = {}
    for r in rows:
        value = r["prediction"]  # NaN (empty tissue) -> null, so the JSON stays standard
        result["biomarkers"].setdefault(r["tissue"], {})[r["biomarker"]] = None if math.isnan(value) else value
    result = write_volume_outputs(labels, ref, output_dir, case, {i: names[i] for i in ids}, result,
                                  f"sam2tune knee {case}", dicom_seg=as_bool(dicom_seg, "dicom_seg"))
    logger.info("Segmented %s (%s) in %.2f s -> %s", input_path, mode, seconds, result["nifti"])
    return result


__all__ = ["PROMPT_FREE_TISSUES", "run_knee_inference", "segment_prompt_free", "segment_prompted_slices"]
