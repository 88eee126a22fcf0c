"""REFUGE phantoms: exact layout, known truth (rater mean vs true ellipse), non-square images, determinism."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from sam2tune.data.phantoms.refuge import NUM_RATERS, ellipse_mask, write_refuge_phantoms


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    out = tmp_path_factory.mktemp("refuge")
    return out, write_refuge_phantoms(str(out), cases=6, seed=0, size=96)


def test_exact_layout(phantoms):
    out, summary = phantoms
    root = out / "REFUGE"
    assert summary["train_ids"] == ["T0001", "T0002", "T0003", "T0004"]
    assert summary["test_ids"] == ["V0001", "V0002"]
    assert sorted(os.listdir(root)) == ["Test-400", "Training-400"]
    assert sorted(os.listdir(root / "Training-400")) == summary["train_ids"]
    for split, ids in (("Training-400", summary["train_ids"]), ("Test-400", summary["test_ids"])):
        for cid in ids:
            expected = {f"{cid}_cropped.jpg"}
            expected |= {f"{cid}_seg_{kind}_{r}_cropped.jpg" for kind in ("cup", "disc") for r in range(1, 8)}
            assert set(os.listdir(root / split / cid)) == expected
    img = Image.open(root / "Training-400" / "T0001" / "T0001_cropped.jpg")
    assert img.format == "JPEG" and img.mode == "RGB" and img.size == (96, 96)
    mask = Image.open(root / "Training-400" / "T0001" / "T0001_seg_cup_1_cropped.jpg")
    assert mask.format == "JPEG" and mask.mode == "L"


def test_rater_majority_matches_true_cup(phantoms):
    out, summary = phantoms
    truth = json.loads(open(summary["truth_file"]).read())
    shape = tuple(truth["image_shape"])
    for cid in summary["train_ids"] + summary["test_ids"]:
        split = "Training-400" if cid.startswith("T") else "Test-400"
        masks = [
            np.asarray(Image.open(out / "REFUGE" / split / cid / f"{cid}_seg_cup_{r}_cropped.jpg")) > 127
            for r in range(1, NUM_RATERS + 1)
        ]
        majority = np.mean(masks, axis=0) >= 0.5
        cup = ellipse_mask(shape, truth["cases"][cid]["cup"])
        disc = ellipse_mask(shape, truth["cases"][cid]["disc"])
        assert dice(majority, cup) > 0.9
        assert 0.8 < min(dice(m, cup) for m in masks) < 1.0  # raters disagree, slightly
        assert cup.sum() and np.all(disc[cup])  # cup inside disc
        assert min(truth["cases"][cid]["cup"]["axes"]) >= 0.08 * min(shape)  # big enough for 64-128 px models


def test_cup_is_visibly_brighter(phantoms):
    out, summary = phantoms
    truth = json.loads(open(summary["truth_file"]).read())
    img = np.asarray(Image.open(out / "REFUGE" / "Training-400" / "T0001" / "T0001_cropped.jpg"), dtype=float)
    cup = ellipse_mask(tuple(truth["image_shape"]), truth["cases"]["T0001"]["cup"])
    assert img[cup].mean() > img[~cup].mean() + 30


def test_non_square_orientation(tmp_path):
    summary = write_refuge_phantoms(str(tmp_path), cases=2, seed=3, size=(64, 112))
    truth = json.loads(open(summary["truth_file"]).read())
    case = tmp_path / "REFUGE" / "Training-400" / "T0001"
    img = np.asarray(Image.open(case / "T0001_cropped.jpg"))
    assert img.shape == (64, 112, 3)  # rows = height
    mask = np.asarray(Image.open(case / "T0001_seg_cup_1_cropped.jpg")) > 127
    assert mask.shape == (64, 112)
    assert dice(mask, ellipse_mask((64, 112), truth["cases"]["T0001"]["cup"])) > 0.85
    assert summary["test_ids"] == ["V0001"]


def test_deterministic_and_splits(tmp_path):
    a = write_refuge_phantoms(str(tmp_path / "a"), cases=4, seed=5, size=48)
    write_refuge_phantoms(str(tmp_path / "b"), cases=4, seed=5, size=48)
    assert a["test_ids"] == ["V0001", "V0002"] and len(a["train_ids"]) == 2
    rel = os.path.join("REFUGE", "Test-400", "V0002", "V0002_cropped.jpg")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a" / rel)), np.asarray(Image.open(tmp_path / "b" / rel)))
    one = write_refuge_phantoms(str(tmp_path / "c"), cases=1, seed=0, size=48)
    assert one["train_ids"] == ["T0001"] and one["test_ids"] == []
    with pytest.raises(ValueError, match="cases must be >= 1"):
        write_refuge_phantoms(str(tmp_path / "d"), cases=0)
    with pytest.raises(ValueError, match="size must be"):
        write_refuge_phantoms(str(tmp_path / "d"), cases=1, size=(8, 8))
