"""Severstal steel-defect reader: train.csv with run-length masks, image checks, deterministic split files.

Kaggle's layout (the competition's updated train.csv, one row per image and defect class present):

```
<dataset_dir>/train.csv              ImageId,ClassId,EncodedPixels
<dataset_dir>/train_images/<ImageId> 1600 x 256 JPEG (grey stored as RGB)
```

``EncodedPixels`` is "start length start length ...": 1-based pixel numbers counted down the columns first
(column-major, i.e. Fortran order over the (H, W) image), as in every Kaggle RLE competition.

Bad rows (malformed RLE, runs past the image, an ImageId with no file, an unknown ClassId, a duplicate) are
reported with their line number in train.csv (the header is line 1) and skipped: never silently dropped.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

CLASS_IDS = (1, 2, 3, 4)
CSV_NAME, IMAGE_DIR = "train.csv", "train_images"
COLUMNS = ("ImageId", "ClassId", "EncodedPixels")
SPLITS = ("train", "val", "test")
IMAGE_SHAPE = (256, 1600)  # (H, W) of every Severstal image

_LAYOUT_HINT = (
    "Expected <dataset_dir>/train.csv (ImageId,ClassId,EncodedPixels; RLE 1-based, column-major) and "
    "<dataset_dir>/train_images/<ImageId>. `python scripts/make_phantoms.py severstal --out DIR` writes a phantom "
    "dataset in this layout."
)


# ---- run-length codec ------------------------------------------------------------------------------------------------
def rle_decode(rle: str, shape: tuple[int, int]) -> np.ndarray:
    """'start length ...' (1-based, column-major) -> bool (H, W) mask;
    ValueError for odd length or runs past the image."""
    tokens = str(rle).split()
    if not tokens:
        return np.zeros(shape, dtype=bool)
    if len(tokens) % 2:
        raise ValueError(f"RLE has an odd number of values ({len(tokens)}): it must be start/length pairs.")
    try:
        pairs = np.asarray(tokens, dtype=np.int64).reshape(-1, 2)
    except ValueError as err:
        raise ValueError(f"RLE holds a value that is not an integer ({err}).") from err
    starts, lengths = pairs[:, 0], pairs[:, 1]
    total = int(shape[0]) * int(shape[1])
    if (starts < 1).any():
        raise ValueError(f"RLE start {int(starts[starts < 1][0])} < 1: pixel numbers are 1-based.")
    if (lengths < 1).any():
        raise ValueError(f"RLE run length {int(lengths[lengths < 1][0])} < 1.")
    ends = starts - 1 + lengths  # exclusive, 0-based
    if (ends > total).any():
        i = int(np.argmax(ends > total))
        raise ValueError(
            f"RLE run {int(starts[i])}+{int(lengths[i])} runs past the image ({shape[0]}x{shape[1]} = {total} pixels)."
        )
    flat = np.zeros(total + 1, dtype=np.int32)
    # +1 at each run start and -1 after its end, then a cumulative sum: vectorised, and overlapping runs stay set.
    np.add.at(flat, starts - 1, 1)
    np.add.at(flat, ends, -1)
    return (np.cumsum(flat[:-1]) > 0).reshape(shape, order="F")


def rle_encode(mask: np.ndarray) -> str:
    """bool/0-1 (H, W) mask -> 'start length ...' (1-based, column-major); '' for an empty mask."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode expects a 2D (H, W) mask, got shape {mask.shape}.")
    flat = np.concatenate([[0], mask.reshape(-1, order="F") > 0, [0]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(flat))  # run starts and ends alternate, 0-based into the unpadded flat mask
    starts, ends = edges[0::2], edges[1::2]
    return " ".join(f"{s + 1} {e - s}" for s, e in zip(starts, ends, strict=True))


# ---- train.csv -------------------------------------------------------------------------------------------------------
@dataclass
class SeverstalTable:
    """Parsed train.csv: good rows as datalist items, bad rows as (line, message)."""

    items: list[dict] = field(default_factory=list)
    bad_rows: list[tuple[int, str]] = field(default_factory=list)
    image_ids: list[str] = field(default_factory=list)  # every ImageId with at least one good row, sorted


def find_severstal_root(dataset_dir: str) -> str:
    """Folder holding train.csv: ``dataset_dir`` itself or ``dataset_dir/severstal``."""
    for candidate in (dataset_dir, os.path.join(dataset_dir, "severstal")):
        if os.path.isfile(os.path.join(candidate, CSV_NAME)):
            return candidate
    if not os.path.isdir(dataset_dir):
        raise FileNotFoundError(f"Severstal dataset folder not found: {dataset_dir}. {_LAYOUT_HINT}")
    raise FileNotFoundError(f"No {CSV_NAME} in {dataset_dir}. {_LAYOUT_HINT}")


def read_train_csv(dataset_dir: str, class_ids: Sequence[int] = CLASS_IDS) -> SeverstalTable:
    """train.csv -> SeverstalTable; each item {"image", "rle", "class_id", "id", "line", "shape"};
    bad rows logged + skipped."""
    root = find_severstal_root(os.fspath(dataset_dir))
    csv_path = os.path.join(root, CSV_NAME)
    image_dir = os.path.join(root, IMAGE_DIR)
    table, seen, shapes = SeverstalTable(), set(), {}
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{csv_path} lacks the column(s) {missing} (header: {reader.fieldnames}). "
                f"The updated Kaggle train.csv has ImageId,ClassId,EncodedPixels. {_LAYOUT_HINT}"
            )
        for line, row in enumerate(reader, start=2):  # header is line 1
            def bad(msg: str, line: int = line, row: dict = row) -> None:
                table.bad_rows.append((line, f"{csv_path} line {line} (ImageId {row.get('ImageId')!r}): {msg}"))

            image_id = (row.get("ImageId") or "").strip()
            try:
                cls = int(str(row.get("ClassId")).strip())
            except ValueError:
                bad(f"ClassId {row.get('ClassId')!r} is not an integer; expected one of {list(class_ids)}.")
                continue
            if cls not in class_ids:
                bad(f"unknown ClassId {cls}; expected one of {list(class_ids)}.")
                continue
            path = os.path.join(image_dir, image_id)
            if not image_id or not os.path.isfile(path):
                bad(f"no image file {path}; add it to {IMAGE_DIR}/ or remove the row.")
                continue
            if (image_id, cls) in seen:
                bad(f"duplicate row for class {cls}; the first one is kept.")
                continue
            if image_id not in shapes:
                with Image.open(path) as im:  # header only: PIL decodes pixels lazily
                    shapes[image_id] = (im.height, im.width)
            rle = (row.get("EncodedPixels") or "").strip()
            try:
                mask = rle_decode(rle, shapes[image_id])
            except ValueError as err:
                bad(f"malformed EncodedPixels: {err}")
                continue
            if not mask.any():
                bad("empty EncodedPixels: a row names a defect that is present; drop the row for defect-free images.")
                continue
            seen.add((image_id, cls))
            table.items.append({
                "image": path, "rle": rle, "class_id": cls, "line": line, "shape": list(shapes[image_id]),
                "id": f"{os.path.splitext(image_id)[0]}_c{cls}",
            })
    for _, message in table.bad_rows:
        logger.warning("Skipped bad row: %s", message)
    if table.bad_rows:
        logger.warning("%s: %d bad row(s) skipped, %d kept.", csv_path, len(table.bad_rows), len(table.items))
    if not table.items:
        raise ValueError(f"{csv_path} has no usable rows ({len(table.bad_rows)} bad). {_LAYOUT_HINT}")
    table.image_ids = sorted({os.path.basename(i["image"]) for i in table.items})
    return table


# ---- deterministic split ---------------------------------------------------------------------------------------------
def split_image_ids(
    image_ids: Sequence[str], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 42
) -> dict[str, list[str]]:
    """ImageIds -> {"train", "val", "test": sorted ids}: a seeded permutation of the sorted ids (by image,
    no leakage)."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(
            f"split fractions must be three non-negative numbers (train, val, test) summing to 1, got {fractions}."
        )
    ordered = sorted(set(image_ids))
    n = len(ordered)
    n_val, n_test = (int(round(n * f)) for f in fractions[1:])
    # Keep every asked-for split non-empty when there are enough images (tiny phantom sets).
    n_val = max(n_val, 1) if fractions[1] > 0 and n >= 3 else n_val
    n_test = max(n_test, 1) if fractions[2] > 0 and n >= 3 else n_test
    perm = np.random.default_rng(seed).permutation(n)
    val, test = set(perm[:n_val]), set(perm[n_val : n_val + n_test])
    out = {"train": [], "val": [], "test": []}
    for i, image_id in enumerate(ordered):
        out["val" if i in val else "test" if i in test else "train"].append(image_id)
    return out


def write_split_files(splits: dict[str, list[str]], split_dir: str) -> dict[str, str]:
    """Write <split_dir>/{train,val,test}.txt (one ImageId a line) atomically -> their paths."""
    os.makedirs(split_dir, exist_ok=True)
    paths = {}
    for name in SPLITS:
        path = os.path.join(split_dir, f"{name}.txt")
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write("".join(f"{i}\n" for i in splits.get(name, [])))
        os.replace(tmp, path)
        paths[name] = path
    return paths


def read_split_files(split_dir: str) -> dict[str, list[str]] | None:
    """<split_dir>/{train,val,test}.txt -> {split: ImageIds}; None if any file is absent."""
    paths = {name: os.path.join(split_dir, f"{name}.txt") for name in SPLITS}
    if not all(os.path.isfile(p) for p in paths.values()):
        return None
    out = {}
    for name, path in paths.items():
        with open(path) as f:
            out[name] = [line.strip() for line in f if line.strip()]
    return out


def severstal_datalist(
    dataset_dir: str,
    split: str = "train",
    split_dir: str | None = None,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 42,
) -> list[dict]:
    """Severstal layout -> MONAI datalist for `split`: one item per (image, defect class), sorted by id.

    With `split_dir`: existing {train,val,test}.txt there are used as they are (pin a split by writing them);
    otherwise the seeded split is computed and written there, so every run records which images it saw.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    table = read_train_csv(dataset_dir)
    splits = read_split_files(split_dir) if split_dir else None
    if splits is None:
        splits = split_image_ids(table.image_ids, fractions, seed)
        if split_dir:
            write_split_files(splits, split_dir)
    keep = set(splits[split])
    items = sorted((i for i in table.items if os.path.basename(i["image"]) in keep), key=lambda i: i["id"])
    if not items:
        raise ValueError(
            f"Severstal split {split!r} is empty ({len(table.image_ids)} images with defects in {dataset_dir}). "
            f"Use more images, other split fractions, or fix the split files in {split_dir}."
        )
    return items


__all__ = [
    "CLASS_IDS",
    "IMAGE_SHAPE",
    "SeverstalTable",
    "find_severstal_root",
    "read_split_files",
    "read_train_csv",
    "rle_decode",
    "rle_encode",
    "severstal_datalist",
    "split_image_ids",
    "write_split_files",
]
