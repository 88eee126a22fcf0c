"""BTCV (Multi-Atlas Labeling Beyond the Cranial Vault) readers: the original NIfTI layout and the converted slices.

```
original:  <dataset_dir>/img/imgXXXX.nii.gz, <dataset_dir>/label/labelXXXX.nii.gz, optional dataset_0.json
           (MONAI's datalist: {"training": [{"image": "imagesTr/img0001.nii.gz", "label": ...}], "validation": [...],
           "test": [...]}; paths relative to dataset_dir)
slices:    <dataset_dir>/{Training,Test}/image/<case>/<i>.jpg + mask/<case>/<i>.npy (one (H, W) label map per slice)
```

Splits: ``train`` trains; ``val`` is the validation split that picks the best epoch (model selection), so a
number measured on it is optimistic; ``test`` is labelled held-out data, never seen in training or model selection.
Where each comes from:

- dataset_0.json: "training" -> train, "validation" -> val, "test" entries *with a label* -> test. BTCV's own
  test cases (``imagesTs``, img0061-img0080, listed in MONAI's dataset_0.json as bare image paths) have no public
  labels, so they cannot be scored: with only those, there is no test split.
- img/ + label/ without dataset_0.json: the last `test_fraction` of the sorted cases -> test (default none), the
  `val_fraction` before them -> val.
- slice layout: Training -> train, Test -> val (it is what the bundle validates on); no test split.

``resolve_eval_split(dataset_dir, "auto")`` is what the bundle's evaluate.json uses: "test" where the data hold
one, else "val" with a warning that the evaluation is on the model-selection split.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re

import nibabel as nib
import numpy as np

from sam2tune.io.volumes import case_name

logger = logging.getLogger(__name__)

BTCV_LABELS: dict[int, str] = {
    1: "spleen",
    2: "right_kidney",
    3: "left_kidney",
    4: "gallbladder",
    5: "esophagus",
    6: "liver",
    7: "stomach",
    8: "aorta",
    9: "inferior_vena_cava",
    10: "portal_and_splenic_veins",
    11: "pancreas",
    12: "right_adrenal_gland",
    13: "left_adrenal_gland",
}
SPLITS = ("train", "val", "test", "all")
EVAL_SPLITS = ("auto", "test", "val")
_SLICE_SPLIT = {"train": "Training", "val": "Test"}
_NO_TEST = (
    "BTCV's own test images (imagesTs, img0061-img0080) have no public labels, so they cannot be scored. Evaluate "
    "on the validation split with --eval_split val (it picked the best epoch: optimistic), or hold labelled cases "
    "out: add them to dataset_0.json as \"test\": [{\"image\": ..., \"label\": ...}]."
)
_HINT = (
    "Expected <dataset_dir>/img/imgXXXX.nii.gz + label/labelXXXX.nii.gz (optionally dataset_0.json), or the slice "
    "layout <dataset_dir>/{Training,Test}/image/<case>/<i>.jpg + mask/<case>/<i>.npy. "
    "`python scripts/make_phantoms.py btcv --out DIR` writes a phantom dataset in the NIfTI layout."
)


def organ_id(key: int | str) -> int:
    """Organ id or BTCV name ('liver', '6') -> id; ValueError naming the known organs otherwise."""
    text = str(key).strip().lower()
    if text.isdigit() and int(text) in BTCV_LABELS:
        return int(text)
    for k, name in BTCV_LABELS.items():
        if text == name:
            return k
    known = ", ".join(f"{k} {v}" for k, v in BTCV_LABELS.items())
    raise ValueError(f"Unknown organ {key!r}: this bundle knows {known}.")


def _from_dataset_json(dataset_dir: str, split: str) -> list[dict] | None:
    path = os.path.join(dataset_dir, "dataset_0.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            meta = json.load(f)
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON ({err}). {_HINT}") from err
    groups = {"train": ["training"], "val": ["validation"], "test": ["test"], "all": ["training", "validation", "test"]}
    keys = groups[split]
    items = []
    for key in keys:
        for n, entry in enumerate(meta.get(key) or []):
            if key == "test" and (isinstance(entry, str) or (isinstance(entry, dict) and "label" not in entry)):
                continue  # an unlabelled test image (BTCV's imagesTs): nothing to score
            if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
                raise ValueError(f"{path}: {key} entry {n} must be {{'image': ..., 'label': ...}}, got {entry!r}.")
            item = {k: os.path.normpath(os.path.join(dataset_dir, entry[k])) for k in ("image", "label")}
            items.append(item | {"case": case_name(item["image"])})
    if not items and split == "test":
        raise FileNotFoundError(f"{path} lists no labelled \"test\" cases. {_NO_TEST}")
    if not items:
        raise ValueError(f"{path} has no '{'/'.join(keys)}' entries for split {split!r}. {_HINT}")
    return items


def _from_folders(dataset_dir: str, split: str, val_fraction: float, test_fraction: float) -> list[dict]:
    images = sorted(glob.glob(os.path.join(dataset_dir, "img", "img*.nii*")))
    items = []
    for img in images:
        label = os.path.join(dataset_dir, "label", os.path.basename(img).replace("img", "label", 1))
        items.append({"image": img, "label": label, "case": case_name(img)})
    # Without dataset_0.json: a fixed split of the sorted cases: train, then val_fraction val, then test_fraction test.
    n = len(items)
    n_test = round(n * test_fraction) if test_fraction > 0 else 0
    n_val = max(1, round(n * val_fraction)) if n - n_test > 1 else 0
    if split == "test" and n_test == 0:
        raise FileNotFoundError(
            f"No test split in {dataset_dir}: test_fraction is 0 and there is no dataset_0.json. {_NO_TEST}"
        )
    cut_val, cut_test = n - n_test - n_val, n - n_test
    return {"train": items[:cut_val], "val": items[cut_val:cut_test], "test": items[cut_test:], "all": items}[split]


def _from_slices(dataset_dir: str, split: str) -> list[dict]:
    if split == "test":
        raise FileNotFoundError(
            f"The slice layout in {dataset_dir} has Training (train) and Test (the validation split, "
            f"used for model selection) only: no held-out test split. {_NO_TEST}"
        )
    parts = ["Training", "Test"] if split == "all" else [_SLICE_SPLIT[split]]
    items = []
    for part in parts:
        for case_dir in sorted(glob.glob(os.path.join(dataset_dir, part, "image", "*"))):
            case = os.path.basename(case_dir)
            items.append({"image": case_dir, "label": os.path.join(dataset_dir, part, "mask", case), "case": case})
    return items


def btcv_datalist(
    dataset_dir: str, split: str = "train", val_fraction: float = 0.2, test_fraction: float = 0.0
) -> list[dict]:
    """BTCV folder (either layout) -> cases of one split (see the module docstring for where each split comes from).

    Args:
        dataset_dir: the BTCV folder.
        split: train | val (model selection) | test (labelled, held out) | all.
        val_fraction: img/ + label/ layout without dataset_0.json: share of the cases for val.
        test_fraction: same layout: share of the cases held out for test (0: no test split).

    Returns:
        [{"image", "label", "case"}], in a fixed order.

    Raises:
        FileNotFoundError: no such folder, no cases, or (split "test") no labelled held-out cases, with the fix.
        ValueError: an unknown split or a malformed dataset_0.json.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}: choose one of {', '.join(SPLITS)}.")
    if not os.path.isdir(dataset_dir):
        raise FileNotFoundError(f"BTCV dataset folder not found: {dataset_dir}. {_HINT}")
    items = _from_dataset_json(dataset_dir, split)
    if items is None and os.path.isdir(os.path.join(dataset_dir, "img")):
        items = _from_folders(dataset_dir, split, val_fraction, test_fraction)
    if items is None and os.path.isdir(os.path.join(dataset_dir, "Training")):
        items = _from_slices(dataset_dir, split)
    if not items:
        raise FileNotFoundError(f"No BTCV cases for split {split!r} in {dataset_dir}. {_HINT}")
    return items


def has_test_split(dataset_dir: str, test_fraction: float = 0.0) -> bool:
    """Whether `dataset_dir` holds labelled held-out (test) cases.

    Args:
        dataset_dir: the BTCV folder.
        test_fraction: as for btcv_datalist.

    Returns:
        True when btcv_datalist(dataset_dir, "test") has cases.
    """
    try:
        return bool(btcv_datalist(dataset_dir, "test", test_fraction=test_fraction))
    except FileNotFoundError:
        return False


def resolve_eval_split(dataset_dir: str, eval_split: str = "auto", test_fraction: float = 0.0) -> str:
    """The split an evaluation runs on: "test" or "val" as asked, or for "auto" test where the data hold one.

    Args:
        dataset_dir: the BTCV folder.
        eval_split: auto | test | val (bundle key eval_split).
        test_fraction: as for btcv_datalist.

    Returns:
        "test" or "val". "auto" without labelled held-out cases gives "val" and logs a warning that the numbers
        are measured on the split that selected the model.

    Raises:
        ValueError: an eval_split other than auto, test, val.
    """
    choice = str(eval_split).strip().lower()
    if choice not in EVAL_SPLITS:
        raise ValueError(f"eval_split must be one of {', '.join(EVAL_SPLITS)}, got {eval_split!r}.")
    if choice != "auto":
        return choice
    if has_test_split(dataset_dir, test_fraction):
        return "test"
    logger.warning("%s has no labelled held-out test split: evaluating on the validation split, which selected the "
                   "best epoch, so the numbers are optimistic. %s", dataset_dir, _NO_TEST)
    return "val"


def read_slice_folder(image_dir: str, mask_dir: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Slice layout case -> (image (D, H, W) float in [0, 1], label (D, H, W) int or None), slices in numeric order."""
    from PIL import Image

    files = sorted(
        glob.glob(os.path.join(image_dir, "*.jpg")), key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)) or 0)
    )
    if not files:
        raise FileNotFoundError(f"No <i>.jpg slices in {image_dir}. {_HINT}")
    image = np.stack([np.asarray(Image.open(f).convert("L"), np.float32) / 255.0 for f in files])
    if mask_dir is None:
        return image, None
    masks = []
    for f in files:
        npy = os.path.join(mask_dir, os.path.splitext(os.path.basename(f))[0] + ".npy")
        if not os.path.isfile(npy):
            raise FileNotFoundError(f"Slice {f} has no mask {npy}: every <i>.jpg needs mask/<case>/<i>.npy. {_HINT}")
        masks.append(np.asarray(np.load(npy, allow_pickle=False)).astype(np.int16))
    return image, np.stack(masks)


def check_case(item: dict, atol: float = 1e-3) -> None:
    """Raise a ValueError naming the case and the fix if its label disagrees with its image or is unusable."""
    case, img_path, lab_path = item.get("case", "?"), item["image"], item["label"]
    for key, p in (("image", img_path), ("label", lab_path)):
        if not os.path.exists(p):
            raise FileNotFoundError(f"case {case}: {key} {p} does not exist; fix the datalist or add the file.")
    if os.path.isdir(img_path):
        image, label = read_slice_folder(img_path, lab_path)
        if image.shape != label.shape:
            raise ValueError(
                f"case {case}: masks {label.shape} differ from slices {image.shape}; regenerate mask/{case}."
            )
    else:
        img, lab = nib.load(img_path), nib.load(lab_path)
        if img.shape[:3] != lab.shape[:3]:
            raise ValueError(
                f"case {case}: label {lab_path} has shape {lab.shape[:3]} but image {img_path} has {img.shape[:3]}; "
                "resample the label onto the image grid (nearest neighbour) or fix the pairing."
            )
        if not np.allclose(img.affine, lab.affine, atol=atol):
            raise ValueError(
                f"case {case}: label affine differs from the image affine ({lab_path} vs {img_path}); the label is not "
                "on the image grid: resample it (nearest neighbour) or copy the image header."
            )
        if min(img.shape[:3]) == 0:
            raise ValueError(
                f"case {case}: image {img_path} is empty (shape {img.shape}); remove it from the datalist."
            )
        label = np.asarray(lab.dataobj)
    values = np.unique(label)
    unknown = [int(v) for v in values if v != 0 and int(v) not in BTCV_LABELS]
    if unknown:
        raise ValueError(f"case {case}: label holds ids {unknown} outside BTCV's 1-13; remap them or drop the case.")
    if len(values) <= 1:
        raise ValueError(
            f"case {case}: label {lab_path} holds no organ (background only); drop the case or fix the label."
        )


def screen_cases(items: list[dict]) -> tuple[list[dict], list[dict]]:
    """Check every case -> (usable items, [{"case", "reason"}] skipped); each skip is logged with its fix."""
    good, skipped = [], []
    for item in items:
        try:
            check_case(item)
            good.append(item)
        except (ValueError, FileNotFoundError) as err:
            logger.warning("Skipping %s", err)
            skipped.append({"case": item.get("case", "?"), "reason": str(err)})
    if not good:
        reasons = "; ".join(s["reason"] for s in skipped)
        raise ValueError(f"No usable BTCV case left after screening: {reasons}")
    return good, skipped


__all__ = [
    "BTCV_LABELS",
    "EVAL_SPLITS",
    "SPLITS",
    "btcv_datalist",
    "check_case",
    "has_test_split",
    "organ_id",
    "read_slice_folder",
    "resolve_eval_split",
    "screen_cases",
]
