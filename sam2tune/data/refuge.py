"""REFUGE optic-cup reader for the layout Medical-SAM2 distributes.

```
<dataset_dir>/REFUGE/Training-400/<id>/<id>_cropped.jpg
                                  /<id>_seg_cup_{1..7}_cropped.jpg   (one binary mask per rater, white = cup)
<dataset_dir>/REFUGE/Test-400/<id>/...
```

``dataset_dir`` may also be the ``REFUGE`` folder itself. Ground truth is built later by
``sam2tune.transforms.LoadRaterMeand`` (mean of raters >= 0.5); the reader only lists files.
"""

from __future__ import annotations

import os
import re

import numpy as np

SPLITS = ("train", "val", "test")
TRAIN_DIR, TEST_DIR = "Training-400", "Test-400"
_CUP_RE = re.compile(r"^(?P<id>.+)_seg_cup_(?P<rater>\d+)_cropped\.jpg$")

_LAYOUT_HINT = (
    "Expected <dataset_dir>/REFUGE/Training-400/<id>/<id>_cropped.jpg with rater masks <id>_seg_cup_{1..7}_cropped.jpg "
    "(and Test-400/ alike); dataset_dir may also be the REFUGE folder itself. "
    "`python scripts/make_phantoms.py refuge --out DIR` writes a phantom dataset in this layout."
)


def find_refuge_root(dataset_dir: str) -> str:
    """Folder holding Training-400/ and/or Test-400/: ``dataset_dir/REFUGE`` or ``dataset_dir`` itself."""
    for candidate in (os.path.join(dataset_dir, "REFUGE"), dataset_dir):
        if any(os.path.isdir(os.path.join(candidate, sub)) for sub in (TRAIN_DIR, TEST_DIR)):
            return candidate
    if not os.path.isdir(dataset_dir):
        raise FileNotFoundError(f"REFUGE dataset folder not found: {dataset_dir}. {_LAYOUT_HINT}")
    raise FileNotFoundError(f"No {TRAIN_DIR}/ or {TEST_DIR}/ folder in {dataset_dir} or its REFUGE/. {_LAYOUT_HINT}")


def refuge_case(case_dir: str) -> dict:
    """One case folder -> {"image": path, "label": [rater cup mask paths sorted by rater number], "id": folder name}."""
    case_id = os.path.basename(os.path.normpath(case_dir))
    image = os.path.join(case_dir, f"{case_id}_cropped.jpg")
    if not os.path.isfile(image):
        raise FileNotFoundError(
            f"REFUGE case {case_dir} has no image {case_id}_cropped.jpg (the image must be named after its folder). "
            f"Remove the folder or fix its contents. {_LAYOUT_HINT}"
        )
    raters = []
    for name in os.listdir(case_dir):
        match = _CUP_RE.match(name)
        if match and match.group("id") == case_id:
            raters.append((int(match.group("rater")), os.path.join(case_dir, name)))
    if not raters:
        raise FileNotFoundError(
            f"REFUGE case {case_dir} has no cup masks ({case_id}_seg_cup_<rater>_cropped.jpg, rater 1..7). "
            f"Add at least one rater mask or remove the case folder. {_LAYOUT_HINT}"
        )
    return {"image": image, "label": [path for _, path in sorted(raters)], "id": case_id}


def _case_dirs(split_dir: str) -> list[str]:
    """Sorted case folders of a split folder; hidden and system folders (``.x``, ``__MACOSX``) are skipped."""
    names = sorted(n for n in os.listdir(split_dir) if not n.startswith((".", "_")))
    return [os.path.join(split_dir, n) for n in names if os.path.isdir(os.path.join(split_dir, n))]


def split_ids(ids: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Case ids -> (train ids, val ids), sorted; a seeded permutation of the sorted ids, so the same ids split alike."""
    ordered = sorted(ids)
    n_val = int(round(len(ordered) * val_fraction))
    if val_fraction > 0 and len(ordered) >= 2:
        n_val = min(max(n_val, 1), len(ordered) - 1)  # keep both sides non-empty when there is anything to split
    perm = np.random.default_rng(seed).permutation(len(ordered))
    val = {ordered[i] for i in perm[:n_val]}
    return [i for i in ordered if i not in val], [i for i in ordered if i in val]


def refuge_datalist(dataset_dir: str, split: str = "train", val_fraction: float = 0.2, seed: int = 0) -> list[dict]:
    """REFUGE layout -> MONAI datalist [{"image": path, "label": [rater paths, 1..7], "id": str}], sorted by id.

    train/val: a deterministic split of Training-400 by case id (``val_fraction``, ``seed``); test: Test-400.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    root = find_refuge_root(os.fspath(dataset_dir))
    split_dir = os.path.join(root, TEST_DIR if split == "test" else TRAIN_DIR)
    if not os.path.isdir(split_dir):
        raise FileNotFoundError(f"REFUGE split '{split}' needs {split_dir}, which does not exist. {_LAYOUT_HINT}")
    cases = [refuge_case(c) for c in _case_dirs(split_dir)]
    if not cases:
        raise FileNotFoundError(f"No case folders in {split_dir}. {_LAYOUT_HINT}")
    if split == "test":
        return cases
    train_ids, val_ids = split_ids([c["id"] for c in cases], val_fraction, seed)
    keep = set(train_ids if split == "train" else val_ids)
    return [c for c in cases if c["id"] in keep]
