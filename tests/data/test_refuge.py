"""REFUGE reader: layout discovery, deterministic train/val split, rater lists, errors that say what to do."""

import csv
import logging
import shutil

import numpy as np
import pytest

from sam2tune.data import refuge_datalist
from sam2tune.data.phantoms.refuge import write_refuge_phantoms


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("refuge_ds")
    write_refuge_phantoms(str(out), cases=12, seed=1, size=48)
    return out


@pytest.fixture()
def copy(dataset, tmp_path):
    """A private copy that a test may damage."""
    dst = tmp_path / "ds"
    shutil.copytree(dataset, dst)
    return dst


def test_items_and_rater_order(dataset):
    items = refuge_datalist(str(dataset), "train")
    assert items and set(items[0]) == {"image", "label", "id", "raters"}
    assert {i["raters"] for i in items} == {7}
    for item in items:
        assert item["image"].endswith(f"{item['id']}/{item['id']}_cropped.jpg")
        assert [p.rsplit("_seg_cup_", 1)[1] for p in item["label"]] == [f"{r}_cropped.jpg" for r in range(1, 8)]
    assert [i["id"] for i in items] == sorted(i["id"] for i in items)


def test_split_is_deterministic_and_disjoint(dataset):
    train, val = refuge_datalist(str(dataset), "train"), refuge_datalist(str(dataset), "val")
    train_ids, val_ids = {i["id"] for i in train}, {i["id"] for i in val}
    assert not train_ids & val_ids
    assert train_ids | val_ids == {f"T{i:04d}" for i in range(1, 10)}
    assert len(val_ids) == 2  # round(9 * 0.2)
    assert refuge_datalist(str(dataset), "train") == train
    other = {i["id"] for i in refuge_datalist(str(dataset), "val", seed=3)} | {
        i["id"] for i in refuge_datalist(str(dataset), "val", seed=4)
    }
    assert other != val_ids  # the seed matters
    assert len(refuge_datalist(str(dataset), "val", val_fraction=0.5)) == 4


def test_test_split_and_refuge_folder_directly(dataset):
    test = refuge_datalist(str(dataset), "test")
    assert [i["id"] for i in test] == ["V0001", "V0002", "V0003"]
    assert refuge_datalist(str(dataset / "REFUGE"), "test") == test


def test_a_missing_rater_mask_refuses_the_case_by_default(copy):
    case = copy / "REFUGE" / "Training-400" / "T0004"
    (case / "T0004_seg_cup_3_cropped.jpg").unlink()
    # the whole Training-400 folder is read, so train and val refuse alike, whichever side T0004 falls on
    for split in ("train", "val"):
        with pytest.raises(
            FileNotFoundError,
            match=r"case .*Training-400/T0004 lacks 1 of its 7 rater masks: T0004_seg_cup_3_cropped\.jpg.*"
            r"mean of 6 raters.*allow_missing_raters=True",
        ):
            refuge_datalist(str(copy), split)


def test_missing_raters_allowed_warn_once_per_case_and_are_counted(copy, caplog):
    case = copy / "REFUGE" / "Test-400" / "V0001"
    for r in (2, 5, 6, 7):
        (case / f"V0001_seg_cup_{r}_cropped.jpg").unlink()
    with caplog.at_level(logging.WARNING, logger="sam2tune.data.refuge"):
        items = refuge_datalist(str(copy), "test", allow_missing_raters="true")  # flags arrive as strings too
        refuge_datalist(str(copy), "test", allow_missing_raters=True)
    item = items[0]
    assert [p.rsplit("_seg_cup_", 1)[1].split("_")[0] for p in item["label"]] == ["1", "3", "4"]
    assert item["raters"] == 3 and [i["raters"] for i in items[1:]] == [7, 7]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # once per case, not once per datalist call
    assert "V0001_seg_cup_2_cropped.jpg, V0001_seg_cup_5_cropped.jpg" in warnings[0] and "3 of 7 raters" in warnings[0]
    with pytest.raises(ValueError, match="allow_missing_raters must be true or false"):
        refuge_datalist(str(copy), "test", allow_missing_raters="sometimes")


def test_raters_outside_the_expected_numbers_are_refused(copy):
    case = copy / "REFUGE" / "Test-400" / "V0002"
    shutil.copy(case / "V0002_seg_cup_1_cropped.jpg", case / "V0002_seg_cup_10_cropped.jpg")
    with pytest.raises(
        ValueError, match=r"V0002 has rater masks numbered outside 1\.\.7: V0002_seg_cup_10_cropped\.jpg.*num_raters"
    ):
        refuge_datalist(str(copy), "test")
    items = refuge_datalist(str(copy), "test", num_raters=10, allow_missing_raters=True)
    assert items[1]["raters"] == 8
    with pytest.raises(ValueError, match="num_raters must be an integer >= 1"):
        refuge_datalist(str(copy), "test", num_raters=0)


def test_eval_report_records_the_rater_count(copy, tmp_path):
    """SegmentationReport writes a `raters` column from the datalist items (collated and decollated alike)."""
    import torch
    from monai.data import decollate_batch, list_data_collate

    from sam2tune.handlers import SegmentationReport

    case = copy / "REFUGE" / "Test-400" / "V0003"
    (case / "V0003_seg_cup_7_cropped.jpg").unlink()
    items = refuge_datalist(str(copy), "test", allow_missing_raters=True)
    batch = list_data_collate([{"id": i["id"], "raters": i["raters"]} for i in items])
    label = torch.zeros(1, 8, 8)
    label[:, 2:5, 2:5] = 1
    outputs = [{"pred": label.clone(), "label": label.clone(), "image": torch.zeros(3, 8, 8)} for _ in items]

    class _State:
        pass

    engine = _State()
    engine.state = _State()
    report = SegmentationReport(str(tmp_path / "eval"), num_overlays=0)
    report._reset(engine)
    for b in (batch, decollate_batch(batch)):
        engine.state.batch, engine.state.output = b, outputs
        report._collect(engine)
    report._write(engine)
    with open(tmp_path / "eval" / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["id"], r["raters"]) for r in rows] == [("V0001", "7"), ("V0002", "7"), ("V0003", "6")] * 2


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"not found: .*nowhere.*make_phantoms\.py refuge --out DIR"):
        refuge_datalist(str(tmp_path / "nowhere"))
    with pytest.raises(
        FileNotFoundError, match=r"No Training-400/ or Test-400/ folder .*Training-400/<id>/<id>_cropped"
    ):
        refuge_datalist(str(tmp_path))


def test_missing_test_split(copy):
    shutil.rmtree(copy / "REFUGE" / "Test-400")
    assert refuge_datalist(str(copy), "train")
    with pytest.raises(FileNotFoundError, match=r"split 'test' needs .*Test-400"):
        refuge_datalist(str(copy), "test")


def test_case_without_cup_masks(copy):
    case = copy / "REFUGE" / "Training-400" / "T0003"
    for p in case.glob("*_seg_cup_*"):
        p.unlink()
    with pytest.raises(FileNotFoundError, match=r"case .*T0003 has no cup masks"):
        refuge_datalist(str(copy), "val")


def test_case_without_image(copy):
    (copy / "REFUGE" / "Training-400" / "T0002" / "T0002_cropped.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"T0002 has no image T0002_cropped\.jpg"):
        refuge_datalist(str(copy), "train")


def test_bad_arguments(dataset):
    with pytest.raises(ValueError, match="split must be one of"):
        refuge_datalist(str(dataset), "validation")
    with pytest.raises(ValueError, match="val_fraction"):
        refuge_datalist(str(dataset), "train", val_fraction=1.0)


def test_unreadable_image_named_by_loader(copy):
    from sam2tune.transforms import LoadJPEGd, LoadRaterMeand

    item = refuge_datalist(str(copy), "test")[0]
    with open(item["image"], "wb") as f:
        f.write(b"not an image")
    with pytest.raises(ValueError, match=r"Cannot read image file .*V0001_cropped\.jpg"):
        LoadJPEGd("image")(item)
    label = LoadRaterMeand("label")(item)["label"]
    assert label.shape == (1, 48, 48) and np.isin(label.numpy(), [0, 1]).all()
