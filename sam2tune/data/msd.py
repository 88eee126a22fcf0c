"""Medical Segmentation Decathlon reader (e.g. Task06_Lung): dataset.json + imagesTr/ + labelsTr/ -> MONAI datalists.

```
<dataset_dir>/dataset.json   {"training": [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}], ...}
<dataset_dir>/imagesTr/*.nii.gz
<dataset_dir>/labelsTr/*.nii.gz
```

``dataset_dir`` may also be the folder above ``Task06_Lung``. The MSD test images have no labels, so train / val /
test are a seeded split of the labelled ``training`` entries (the same seed always gives the same split).
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np

SPLITS = ("train", "val", "test", "all")
DEFAULT_TASK = "Task06_Lung"
_HINT = (
    "Expected <dataset_dir>/dataset.json with imagesTr/ and labelsTr/ (Medical Segmentation Decathlon layout; "
    "dataset_dir may also be the folder holding Task06_Lung/). "
    "`python scripts/make_phantoms.py lung_nodule --out DIR` writes a phantom dataset in this layout."
)


def find_msd_root(dataset_dir: str, task: str = DEFAULT_TASK) -> str:
    """Folder holding dataset.json: ``dataset_dir`` itself or ``dataset_dir/<task>``."""
    for candidate in (dataset_dir, os.path.join(dataset_dir, task)):
        if os.path.isfile(os.path.join(candidate, "dataset.json")):
            return candidate
    if not os.path.isdir(dataset_dir):
        raise FileNotFoundError(f"MSD dataset folder not found: {dataset_dir}. {_HINT}")
    raise FileNotFoundError(f"No dataset.json in {dataset_dir} or {os.path.join(dataset_dir, task)}. {_HINT}")


def read_msd_training(dataset_dir: str, task: str = DEFAULT_TASK) -> list[dict]:
    """All labelled cases of dataset.json -> [{"image": abs path, "label": abs path, "id": case name}],
    checked to exist."""
    root = find_msd_root(dataset_dir, task)
    path = os.path.join(root, "dataset.json")
    try:
        with open(path) as f:
            meta = json.load(f)
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON ({err}). {_HINT}") from err
    entries = meta.get("training") if isinstance(meta, dict) else None
    if not entries:
        raise ValueError(f"{path} has no 'training' entries (list of {{'image', 'label'}} paths). {_HINT}")
    items = []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
            raise ValueError(f"{path}: training entry {n} must be {{'image': ..., 'label': ...}}, got {entry!r}.")
        item = {k: os.path.normpath(os.path.join(root, entry[k])) for k in ("image", "label")}
        for k, p in item.items():
            if not os.path.isfile(p):
                raise FileNotFoundError(
                    f"{path}: training entry {n} names {k} {entry[k]!r}, but {p} does not exist. "
                    f"Restore the file or remove the entry from dataset.json."
                )
        item["id"] = os.path.basename(item["image"]).split(".nii")[0]
        items.append(item)
    return items


def split_cases(ids: list[str], val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[str]]:
    """Case ids -> {"train", "val", "test": sorted ids}: a seeded permutation of the sorted ids;
    each split >= 1 case."""
    ordered = sorted(ids)
    n = len(ordered)
    if n < 3:
        raise ValueError(f"Need at least 3 labelled cases to split into train/val/test, got {n}: add cases.")
    n_test = min(max(int(round(n * test_fraction)), 1), n - 2)
    n_val = min(max(int(round(n * val_fraction)), 1), n - 1 - n_test)
    perm = np.random.default_rng(seed).permutation(n)
    test = {ordered[i] for i in perm[:n_test]}
    val = {ordered[i] for i in perm[n_test:n_test + n_val]}
    return {
        "train": [i for i in ordered if i not in test and i not in val],
        "val": [i for i in ordered if i in val],
        "test": [i for i in ordered if i in test],
    }


def msd_datalist(
    dataset_dir: str, split: str = "train", val_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 0,
    task: str = DEFAULT_TASK,
) -> list[dict]:
    """MSD labelled cases of one split ("train" | "val" | "test" | "all") -> [{"image", "label", "id"}]."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}: choose one of {', '.join(SPLITS)}.")
    items = read_msd_training(dataset_dir, task)
    if split == "all":
        return items
    keep = set(split_cases([i["id"] for i in items], val_fraction, test_fraction, seed)[split])
    return [i for i in items if i["id"] in keep]


def volume_datalist(input_path: str, centers: list | None = None, label_path: str | None = None) -> list[dict]:
    """Inference input: a NIfTI file or a folder of them -> [{"image", "id", + "centers" or "label"}].

    Prompt-free nodule crops need the nodule locations: `centers` (voxel [x, y, z] per nodule, one volume only) or
    `label_path` (a mask whose connected components are the nodules, e.g. from a detector or an annotator).
    """
    if os.path.isdir(input_path):
        files = sorted(glob.glob(os.path.join(input_path, "*.nii.gz")) + glob.glob(os.path.join(input_path, "*.nii")))
    elif os.path.isfile(input_path):
        files = [input_path]
    else:
        raise FileNotFoundError(f"input_path {input_path} is neither a NIfTI file nor a folder of them.")
    if not files:
        raise FileNotFoundError(f"No .nii / .nii.gz files in {input_path}.")
    if centers is None and label_path is None:
        raise ValueError(
            "Nodule crops need nodule locations: pass --centers '[[x, y, z], ...]' (voxel indices) "
            "or --label_path MASK.nii.gz (each connected component is one nodule)."
        )
    if centers is not None and len(files) != 1:
        raise ValueError(f"--centers applies to one volume, but input_path {input_path} holds {len(files)}.")
    items = []
    for f in files:
        item = {"image": f, "id": os.path.basename(f).split(".nii")[0]}
        if centers is not None:
            arr = np.asarray(centers, dtype=float)
            if arr.ndim != 2 or arr.shape[1] != 3:
                raise ValueError(f"centers must be a list of [x, y, z] voxel indices, got {centers!r}.")
            item["centers"] = arr.tolist()
        else:
            if not os.path.isfile(label_path):
                raise FileNotFoundError(f"label_path {label_path} does not exist.")
            item["label"] = label_path
        items.append(item)
    return items
