"""Inference on a new CT volume: NIfTI file or DICOM series + a prompts JSON -> label map on the input grid.

Prompts JSON (organ name or id -> one prompt or a list; coordinates in pixels of the volume's slices as
sam2tune.io.volumes reads them: slice k, x = column, y = row):

```
{"liver": {"slice": 40, "box": [120, 200, 260, 330]},
 "8":     [{"slice": 38, "points": [[250, 210]], "point_labels": [1]}, {"slice": 70, "box": [240, 200, 262, 224]}],
 "spleen": {"slice": 45, "mask": "spleen_45.npy"}}
```
A mask is a .npy (H, W) of that slice, its path relative to the prompts file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time

import numpy as np
import torch

from sam2tune.data.btcv import BTCV_LABELS, organ_id
from sam2tune.io.volumes import read_volume, write_label_nifti
from sam2tune.networks.propagator import ObjectPrompt, logits_to_labels, propagate_volume
from sam2tune.transforms.ct import DEFAULT_WINDOW, window_hu
from sam2tune.utils.dist import unwrap

logger = logging.getLogger(__name__)


def label_id(key: int | str, names: dict[int, str], kind: str = "organ") -> int:
    """Label id or name ('femoral_cartilage', '1') among ``names`` -> id; ValueError naming the known labels otherwise."""
    text = str(key).strip().lower()
    if text.isdigit() and int(text) in names:
        return int(text)
    for k, name in names.items():
        if text == str(name).lower():
            return int(k)
    known = ", ".join(f"{k} {v}" for k, v in names.items())
    raise ValueError(f"Unknown {kind} {key!r}: this bundle knows {known}.")


def read_prompts(
    path_or_dict, depth: int, source: str = "prompts", names: dict | None = None, kind: str = "organ",
    flag: str = "--prompts_file",
) -> tuple[list[int], list[list[ObjectPrompt]]]:
    """Prompts JSON file (or dict) -> (label ids, per-label ObjectPrompt lists); errors name the label and the fix.

    ``names`` ({id: name}) are the labels this bundle knows (default: BTCV organs); ``kind`` ("organ", "tissue")
    and ``flag`` (the bundle's CLI option) only word the error messages.
    """
    resolve = organ_id if names is None else (lambda k: label_id(k, {int(i): v for i, v in names.items()}, kind))
    if isinstance(path_or_dict, dict):
        data = path_or_dict
    else:
        source = str(path_or_dict)
        if not os.path.isfile(source):
            raise FileNotFoundError(f"Prompts file not found: {source}. Pass {flag} PATH (see the bundle's docs/README.md).")
        try:
            with open(source) as f:
                data = json.load(f)
        except ValueError as err:
            raise ValueError(f"{source} is not valid JSON ({err}).") from err
    data = data.get("prompts", data) if isinstance(data, dict) else data
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{source}: expected {{{kind}: {{'slice': k, 'box': [x0, y0, x1, y1]}} or a list of them}}.")
    ids, prompts = [], []
    for key, value in data.items():
        try:
            organ = resolve(key)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from err
        plist = []
        for p in value if isinstance(value, list) else [value]:
            if not isinstance(p, dict) or "slice" not in p:
                raise ValueError(f"{source}: {kind} {key!r} needs {{'slice': k, 'box' or 'points'}}, got {p!r}.")
            k = int(p["slice"])
            if not 0 <= k < depth:
                raise ValueError(f"{source}: {kind} {key!r} is prompted on slice {k}, outside the volume (slices 0..{depth - 1}).")
            unknown = set(p) - {"slice", "box", "points", "point_labels", "mask"}
            if unknown:
                raise ValueError(f"{source}: {kind} {key!r} has unknown prompt keys {sorted(unknown)}; use slice, box, points, point_labels, mask.")
            mask = None
            if p.get("mask") is not None:
                # a mask prompt is a .npy (H, W) file of that slice (relative paths: next to the prompts file)
                mask_path = os.path.join(os.path.dirname(source), p["mask"]) if not os.path.isabs(p["mask"]) else p["mask"]
                if not os.path.isfile(mask_path):
                    raise FileNotFoundError(f"{source}: {kind} {key!r} mask {mask_path} not found; give a .npy (H, W) of slice {k}.")
                mask = np.load(mask_path, allow_pickle=False)
            box = p.get("box")
            if box is not None and len(box) != 4:
                raise ValueError(f"{source}: {kind} {key!r} box must be [x0, y0, x1, y1], got {box!r}.")
            try:
                plist.append(ObjectPrompt(k, box=box, points=p.get("points"), point_labels=p.get("point_labels"), mask=mask))
            except ValueError as err:
                raise ValueError(f"{source}: {kind} {key!r}: {err}") from err
        if organ in ids:
            raise ValueError(f"{source}: {kind} {key!r} given twice; list all its prompts under one key.")
        ids.append(organ)
        prompts.append(plist)
    return ids, prompts


def _case_name(path: str) -> str:
    return re.sub(r"\.nii(\.gz)?$", "", os.path.basename(os.path.normpath(path)))


def run_volume_inference(
    network,
    input_path: str,
    prompts_file,
    output_dir: str,
    device: str | torch.device = "cpu",
    amp: bool = False,
    window=DEFAULT_WINDOW,
    save_npy: bool = False,
    dicom_seg: bool = True,
    chunk_size: int = 16,
    organ_names: dict | None = None,
) -> dict:
    """Segment one volume -> {"nifti": path, "dicom_seg": path | None, "npy_dir": path | None, "seconds": s, "organs": {...}}."""
    names = {int(k): v for k, v in (organ_names or BTCV_LABELS).items()}
    vol = read_volume(str(input_path))
    if vol.array.size == 0 or min(vol.array.shape) == 0:
        raise ValueError(f"{input_path}: the volume is empty (shape {vol.array.shape}).")
    ids, prompts = read_prompts(prompts_file, vol.array.shape[0])
    net = unwrap(network).to(device).eval()
    volume = torch.from_numpy(window_hu(vol.array, window))[:, None].to(device)
    device = torch.device(device)
    t0 = time.perf_counter()
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(amp) and device.type == "cuda"):
        logits, _ = propagate_volume(net, volume, prompts, chunk_size)
        labels = logits_to_labels(logits.float(), ids).cpu().numpy().astype(np.uint8)
    seconds = time.perf_counter() - t0
    case = _case_name(str(input_path))
    os.makedirs(output_dir, exist_ok=True)
    result = {"input": str(input_path), "seconds": seconds, "nifti": write_label_nifti(labels, vol, os.path.join(output_dir, f"{case}_seg.nii.gz")),
              "dicom_seg": None, "npy_dir": None,
              "organs": {names.get(i, str(i)): int((labels == i).sum()) for i in ids}}
    if save_npy:
        npy_dir = os.path.join(output_dir, f"{case}_npy")
        os.makedirs(npy_dir, exist_ok=True)
        for k in range(labels.shape[0]):
            np.save(os.path.join(npy_dir, f"{k}.npy"), labels[k])
        result["npy_dir"] = npy_dir
    if vol.kind == "dicom" and dicom_seg:
        if labels.any():
            from sam2tune.io.dicom_seg import write_dicom_seg

            result["dicom_seg"] = write_dicom_seg(labels, vol.reference_files, os.path.join(output_dir, f"{case}_seg.dcm"),
                                                  {i: names.get(i, str(i)) for i in ids}, "sam2tune abdomen_ct_sam2")
        else:
            logger.warning("No organ predicted in %s: no DICOM SEG written (a SEG needs at least one segment).", input_path)
    with open(os.path.join(output_dir, f"{case}_result.json"), "w") as f:
        json.dump(result, f, indent=2)
    logger.info("Segmented %s in %.2f s -> %s", input_path, seconds, result["nifti"])
    return result


__all__ = ["label_id", "read_prompts", "run_volume_inference"]
