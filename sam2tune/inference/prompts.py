"""Prompts files for volume inference: label name or id -> per-slice box / points / mask prompts.

Prompts JSON (label name or id -> one prompt or a list; coordinates in pixels of the volume's slices as
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
import os

import numpy as np

from sam2tune.data.btcv import organ_id
from sam2tune.networks.propagator import ObjectPrompt


def label_id(key: int | str, names: dict[int, str], kind: str = "organ") -> int:
    """Label id or name ('femoral_cartilage', '1') among ``names`` -> id; ValueError naming the known labels."""
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
            raise FileNotFoundError(
                f"Prompts file not found: {source}. Pass {flag} PATH (see the bundle's docs/README.md)."
            )
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
                raise ValueError(
                    f"{source}: {kind} {key!r} is prompted on slice {k}, outside the volume (slices 0..{depth - 1})."
                )
            unknown = set(p) - {"slice", "box", "points", "point_labels", "mask"}
            if unknown:
                raise ValueError(
                    f"{source}: {kind} {key!r} has unknown prompt keys {sorted(unknown)}; "
                    "use slice, box, points, point_labels, mask."
                )
            mask = None
            if p.get("mask") is not None:
                # a mask prompt is a .npy (H, W) file of that slice (relative paths: next to the prompts file)
                mask_path = (
                    os.path.join(os.path.dirname(source), p["mask"]) if not os.path.isabs(p["mask"]) else p["mask"]
                )
                if not os.path.isfile(mask_path):
                    raise FileNotFoundError(
                        f"{source}: {kind} {key!r} mask {mask_path} not found; give a .npy (H, W) of slice {k}."
                    )
                mask = np.load(mask_path, allow_pickle=False)
            box = p.get("box")
            if box is not None and len(box) != 4:
                raise ValueError(f"{source}: {kind} {key!r} box must be [x0, y0, x1, y1], got {box!r}.")
            try:
                plist.append(
                    ObjectPrompt(k, box=box, points=p.get("points"), point_labels=p.get("point_labels"), mask=mask)
                )
            except ValueError as err:
                raise ValueError(f"{source}: {kind} {key!r}: {err}") from err
        if organ in ids:
            raise ValueError(f"{source}: {kind} {key!r} given twice; list all its prompts under one key.")
        ids.append(organ)
        prompts.append(plist)
    return ids, prompts


__all__ = ["label_id", "read_prompts"]
