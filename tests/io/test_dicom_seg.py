"""DICOM SEG round trip: written segments and frames read back with pydicom and pydicom-seg on the source grid."""

import re

import numpy as np
import pydicom
import pydicom_seg
import pytest

from sam2tune.io.dicom_seg import read_dicom_seg, write_dicom_seg
from sam2tune.io.dicom_series import write_dicom_series


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    out = tmp_path_factory.mktemp("series")
    vol = np.random.default_rng(0).uniform(0, 1000, (6, 20, 24))
    files = write_dicom_series(vol, str(out / "mr"), spacing=(3.0, 0.5, 0.7), origin=(10.0, -5.0, 2.0))
    lab = np.zeros((6, 20, 24), np.int64)
    lab[1:4, 3:8, 4:10] = 1
    lab[2:6, 10:15, 5:20] = 3
    return files, lab, out


def test_round_trip_pydicom_and_pydicom_seg(series):
    files, lab, out = series
    path = write_dicom_seg(lab, files, str(out / "seg.dcm"), {1: "femoral cartilage", 3: "tibial cartilage", 2: "x"})
    ds = pydicom.dcmread(path)
    assert ds.Modality == "SEG" and ds.SeriesDescription == "sam2tune"
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["femoral cartilage", "tibial cartilage"]
    # frames = non-empty slices per segment: label 1 on slices 1..3, label 3 on slices 2..5
    assert int(ds.NumberOfFrames) == 3 + 4
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == pydicom.dcmread(files[0]).SeriesInstanceUID
    decoded = pydicom_seg.SegmentReader().read(ds)
    assert decoded.available_segments == {1, 3}
    back, names = read_dicom_seg(path, files)
    assert names == {1: "femoral cartilage", 3: "tibial cartilage"}
    np.testing.assert_array_equal(back, lab)


def test_reversed_file_order_keeps_slices_in_place(series):
    files, lab, out = series
    path = write_dicom_seg(lab[::-1], files[::-1], str(out / "rev.dcm"), {1: "a", 3: "b"}, series_description="rev")
    back, _ = read_dicom_seg(path, files)
    np.testing.assert_array_equal(back, lab)


@pytest.mark.parametrize(
    "label_map, names, message",
    [
        (np.zeros((5, 20, 24), int), {1: "a"}, "5 slices but 6 reference files"),
        (np.zeros((6, 20, 24), int), {1: "a"}, "background only"),
        (np.ones((6, 20, 24), int) * 2, {1: "a"}, "labels [2] have no entry in segment_names"),
        (np.ones((6, 10, 24), int), {1: "a"}, "resample the prediction"),
        (np.ones((6, 20, 24), float), {1: "a"}, "integer labels"),
    ],
)
def test_bad_input_messages(series, label_map, names, message):
    files, _, out = series
    with pytest.raises(ValueError, match=re.escape(message)):
        write_dicom_seg(label_map, files, str(out / "bad.dcm"), names)
