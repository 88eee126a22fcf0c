"""Severstal reader: RLE round-trips exactly, bad rows are reported with line numbers and skipped, splits are stable."""

from __future__ import annotations

import csv
import logging

import numpy as np
import pytest
from PIL import Image

from sam2tune.data.phantoms.severstal import write_severstal_phantoms
from sam2tune.data.severstal import (
    read_split_files,
    read_train_csv,
    rle_decode,
    rle_encode,
    severstal_datalist,
    split_image_ids,
)
from sam2tune.transforms.rle import DecodeRLEd


@pytest.mark.parametrize("shape", [(4, 5), (32, 200), (256, 1600)])
def test_rle_round_trip_exact(shape):
    rng = np.random.default_rng(sum(shape))
    for density in (0.0, 0.05, 0.5, 1.0):
        mask = rng.random(shape) < density
        rle = rle_encode(mask)
        assert np.array_equal(rle_decode(rle, shape), mask)
        assert rle_encode(rle_decode(rle, shape)) == rle


def test_rle_is_one_based_column_major():
    mask = np.zeros((3, 4), bool)
    mask[1:3, 0] = True  # pixels 2, 3 counting down the first column from 1
    mask[0, 1] = True  # pixel 4: top of the second column
    assert rle_encode(mask) == "2 3"
    assert np.array_equal(rle_decode("2 3", (3, 4)), mask)
    assert rle_encode(np.ones((2, 2))) == "1 4"
    assert rle_encode(np.zeros((2, 2))) == ""


@pytest.mark.parametrize(
    "rle, message",
    [
        ("1 2 3", "odd number"),
        ("10 5", "runs past the image"),
        ("0 2", "1-based"),
        ("3 0", "length 0"),
        ("a 2", "not an integer"),
    ],
)
def test_rle_decode_rejects_malformed(rle, message):
    with pytest.raises(ValueError, match=message):
        rle_decode(rle, (3, 4))


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    out = tmp_path_factory.mktemp("severstal")
    summary = write_severstal_phantoms(str(out), cases=10, seed=3, size=32)
    return out, summary


def test_phantoms_write_kaggle_layout(phantoms):
    out, summary = phantoms
    assert summary["shape_hw"] == [32, 200] and summary["images"] == 10
    assert len(list((out / "train_images").glob("*.jpg"))) == 10
    with open(out / "train.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["ImageId", "ClassId", "EncodedPixels"]
    assert len(rows) == summary["rows"] and sum(summary["per_class"].values()) == len(rows)
    first = rows[0]
    with Image.open(out / "train_images" / first["ImageId"]) as im:
        assert im.size == (200, 32) and im.mode == "RGB"
        img = np.asarray(im.convert("L"), dtype=float)
    mask = rle_decode(first["EncodedPixels"], (32, 200))
    # the defect is painted where its mask says: its mean intensity differs clearly from the steel around it
    assert mask.any() and abs(img[mask].mean() - img[~mask].mean()) > 10


def test_default_phantom_size_is_severstal(tmp_path):
    summary = write_severstal_phantoms(str(tmp_path), cases=1, seed=0)
    assert summary["shape_hw"] == [256, 1600]


def test_bad_rows_reported_with_line_numbers_and_skipped(phantoms, tmp_path, caplog):
    out, _ = phantoms
    good = list(csv.reader(open(out / "train.csv")))
    header, rows = good[0], good[1:]
    image_id = rows[0][0]
    bad = [
        [image_id, "3", "1 2 3"],  # odd length
        [image_id, "4", f"{32 * 200} 5"],  # runs past the image
        ["nope.jpg", "1", "1 2"],  # no such file
        [image_id, "7", "1 2"],  # unknown class
    ]
    data = tmp_path / "bad"
    (data / "train_images").mkdir(parents=True)
    for f in (out / "train_images").iterdir():
        (data / "train_images" / f.name).symlink_to(f)
    with open(data / "train.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows, *bad])
    with caplog.at_level(logging.WARNING, logger="sam2tune.data.severstal"):
        table = read_train_csv(str(data))
    first_bad = len(rows) + 2  # header is line 1
    lines = [line for line, _ in table.bad_rows]
    assert lines == [first_bad, first_bad + 1, first_bad + 2, first_bad + 3]
    messages = [m for _, m in table.bad_rows]
    assert "odd number" in messages[0] and f"line {first_bad}" in messages[0]
    assert "runs past the image" in messages[1]
    assert "nope.jpg" in messages[2] and "no image file" in messages[2]
    assert "unknown ClassId 7" in messages[3]
    assert len(table.items) == len(rows)  # every good row kept, every bad one skipped
    assert f"line {first_bad + 3}" in caplog.text and "4 bad row(s) skipped" in caplog.text


def test_missing_csv_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="make_phantoms.py severstal"):
        read_train_csv(str(tmp_path))


def test_split_is_deterministic_disjoint_and_written(phantoms, tmp_path):
    out, _ = phantoms
    ids = [f"{i:03d}.jpg" for i in range(50)]
    a, b = split_image_ids(ids, seed=42), split_image_ids(list(reversed(ids)), seed=42)
    assert a == b and sorted(sum(a.values(), [])) == ids
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (40, 5, 5)
    split_dir = tmp_path / "splits"
    items = {s: severstal_datalist(str(out), s, str(split_dir)) for s in ("train", "val", "test")}
    written = read_split_files(str(split_dir))
    for s, its in items.items():
        assert {i["image"].rsplit("/", 1)[1] for i in its} == set(written[s])
    assert not set(written["train"]) & (set(written["val"]) | set(written["test"]))
    # pinned split files win over a different seed
    assert severstal_datalist(str(out), "val", str(split_dir), seed=7) == items["val"]


def test_decode_transform_gives_class_valued_label(phantoms):
    out, _ = phantoms
    item = severstal_datalist(str(out), "train")[0]
    from sam2tune.transforms import LoadJPEGd

    d = DecodeRLEd()(LoadJPEGd()(dict(item)))
    assert tuple(d["label"].shape) == (1, 32, 200)
    assert set(np.unique(d["label"].numpy())) == {0.0, float(item["class_id"])}
    d["rle"] = "1 2 3"
    with pytest.raises(ValueError, match=f"line {item['line']}"):
        DecodeRLEd()(d)
