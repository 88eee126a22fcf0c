"""REFUGE optic-cup reader for the layout Medical-SAM2 distributes.

```
<dataset_dir>/REFUGE/Training-400/<id>/<id>_cropped.jpg
                                  /<id>_seg_cup_{1..7}_cropped.jpg   (one binary mask per rater, white = cup)
<dataset_dir>/REFUGE/Test-400/<id>/...
```

``dataset_dir`` may also be the ``REFUGE`` folder itself. Ground truth is built later by
``sam2tune.transforms.LoadRaterMeand`` (mean of raters >= 0.5); the reader lists files and checks that each case
has all its raters: a missing rater mask would silently change the truth, so such a case is refused unless
``allow_missing_raters`` is set (then it warns once per case and the item's ``raters`` entry, which the evaluation
report writes per image, gives the count).
"""

from __future__ import annotations

import logging
import os
import re

import numpy as np

from sam2tune.utils.flags import as_bool

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
TRAIN_DIR, TEST_DIR = "Training-400", "Test-400"
NUM_RATERS = 7
# Case folders already warned about (allow_missing_raters): train and val datalists read the same folders.
_WARNED: set[str] = set()
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


def refuge_case(case_dir: str, num_raters: int = NUM_RATERS, allow_missing_raters: bool | str = False) -> dict:
    """One case folder -> {"image", "label": rater cup mask paths sorted by rater number, "id", "raters": count}.

    Ground truth is the mean of the raters, so a missing rater mask changes it: by default a case without all of
    ``<id>_seg_cup_{1..num_raters}_cropped.jpg`` is refused, naming the missing files. With
    ``allow_missing_raters`` it is kept on the raters present and a warning names the missing files (once per
    case folder and process); its ``raters`` entry then says how many raters its truth is the mean of.

    Args:
        case_dir: a REFUGE case folder, named after its case id.
        num_raters: raters every case must have (REFUGE: 7). Rater files numbered above it are refused.
        allow_missing_raters: keep a case missing some (not all) rater masks, with a warning. A flag: bool or
            "true"/"false".

    Returns:
        The datalist item of the case.

    Raises:
        FileNotFoundError: no image, no rater mask, or (without ``allow_missing_raters``) a missing rater mask.
        ValueError: rater files numbered outside 1..num_raters.
    """
    allow = as_bool(allow_missing_raters, "allow_missing_raters")
    if isinstance(num_raters, bool) or not isinstance(num_raters, int) or num_raters < 1:
        raise ValueError(f"num_raters must be an integer >= 1, got {num_raters!r}.")
    case_id = os.path.basename(os.path.normpath(case_dir))
    image = os.path.join(case_dir, f"{case_id}_cropped.jpg")
    if not os.path.isfile(image):
        raise FileNotFoundError(
            f"REFUGE case {case_dir} has no image {case_id}_cropped.jpg (the image must be named after its folder). "
            f"Remove the folder or fix its contents. {_LAYOUT_HINT}"
        )
    raters = {}
    for name in os.listdir(case_dir):
        match = _CUP_RE.match(name)
        if match and match.group("id") == case_id:
            raters[int(match.group("rater"))] = os.path.join(case_dir, name)
    if not raters:
        raise FileNotFoundError(
            f"REFUGE case {case_dir} has no cup masks ({case_id}_seg_cup_<rater>_cropped.jpg, rater 1..{num_raters}). "
            f"Add the rater masks or remove the case folder. {_LAYOUT_HINT}"
        )
    outside = sorted(r for r in raters if not 1 <= r <= num_raters)
    if outside:
        raise ValueError(
            f"REFUGE case {case_dir} has rater masks numbered outside 1..{num_raters}: "
            f"{', '.join(os.path.basename(raters[r]) for r in outside)}. Their mean would not be the REFUGE truth: "
            f"remove them, or set num_raters (refuge_datalist argument) to the number of raters of this dataset."
        )
    missing = [f"{case_id}_seg_cup_{r}_cropped.jpg" for r in range(1, num_raters + 1) if r not in raters]
    if missing and not allow:
        raise FileNotFoundError(
            f"REFUGE case {case_dir} lacks {len(missing)} of its {num_raters} rater masks: {', '.join(missing)}. "
            f"Its ground truth would silently be the mean of {len(raters)} raters. Restore the file(s) or remove the "
            f"case folder; or set allow_missing_raters=True (refuge_datalist argument) to keep such cases on the "
            f"raters present, with a warning and the count in their 'raters' entry."
        )
    if missing and os.path.abspath(case_dir) not in _WARNED:
        _WARNED.add(os.path.abspath(case_dir))
        logger.warning(
            "REFUGE case %s lacks rater mask(s) %s: its ground truth is the mean of %d of %d raters "
            "(allow_missing_raters is set).",
            case_dir,
            ", ".join(missing),
            len(raters),
            num_raters,
        )
    return {"image": image, "label": [raters[r] for r in sorted(raters)], "id": case_id, "raters": len(raters)}


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


def refuge_datalist(
    dataset_dir: str,
    split: str = "train",
    val_fraction: float = 0.2,
    seed: int = 0,
    num_raters: int = NUM_RATERS,
    allow_missing_raters: bool | str = False,
) -> list[dict]:
    """REFUGE layout -> MONAI datalist [{"image": path, "label": [rater paths, 1..7], "id": str, "raters": int}].

    train/val: a deterministic split of Training-400 by case id (``val_fraction``, ``seed``); test: Test-400.
    Items are sorted by id. A case missing a rater mask is refused unless ``allow_missing_raters`` (see
    `refuge_case`); the whole folder is checked, so train and val refuse alike.

    Args:
        dataset_dir: folder holding REFUGE/ (or the REFUGE folder itself).
        split: train | val | test.
        val_fraction: fraction of Training-400 cases held out as val.
        seed: seed of the train/val split.
        num_raters: rater masks every case must have (REFUGE: 7).
        allow_missing_raters: keep cases with some rater masks missing, with a warning per case.

    Returns:
        The datalist of the split.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    root = find_refuge_root(os.fspath(dataset_dir))
    split_dir = os.path.join(root, TEST_DIR if split == "test" else TRAIN_DIR)
    if not os.path.isdir(split_dir):
        raise FileNotFoundError(f"REFUGE split '{split}' needs {split_dir}, which does not exist. {_LAYOUT_HINT}")
    cases = [refuge_case(c, num_raters, allow_missing_raters) for c in _case_dirs(split_dir)]
    if not cases:
        raise FileNotFoundError(f"No case folders in {split_dir}. {_LAYOUT_HINT}")
    if split == "test":
        return cases
    train_ids, val_ids = split_ids([c["id"] for c in cases], val_fraction, seed)
    keep = set(train_ids if split == "train" else val_ids)
    return [c for c in cases if c["id"] in keep]
