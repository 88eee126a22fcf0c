"""Prompt simulation functions: boxes, clicks, instances, classes (numpy and torch inputs)."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from sam2tune.prompts import (
    connected_instances,
    mask_to_box,
    sample_points,
    select_class,
    select_instance,
)


def rect_mask(shape=(32, 48), rows=(3, 7), cols=(10, 15)) -> np.ndarray:
    m = np.zeros(shape, dtype=np.uint8)
    m[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = 1
    return m


def test_box_is_tight_inclusive_xyxy():
    box = mask_to_box(rect_mask())
    assert box.dtype == np.float32 and box.shape == (4,)
    np.testing.assert_array_equal(box, [10, 3, 15, 7])


def test_box_accepts_torch_and_3d():
    np.testing.assert_array_equal(mask_to_box(torch.from_numpy(rect_mask())), [10, 3, 15, 7])
    vol = np.zeros((5, 32, 48), bool)
    vol[1:3] = rect_mask().astype(bool)
    np.testing.assert_array_equal(mask_to_box(vol), [10, 3, 1, 15, 7, 2])


def test_box_empty_is_zeros():
    np.testing.assert_array_equal(mask_to_box(np.zeros((8, 9))), np.zeros(4))


@pytest.mark.parametrize("seed", range(20))
def test_box_jitter_bounded_and_ordered(seed):
    mask = rect_mask()
    tight = mask_to_box(mask)
    box = mask_to_box(mask, jitter=0.2, rng=seed)
    extent = np.array([6, 5, 6, 5], dtype=np.float32)  # inclusive width/height of the rectangle
    assert np.all(np.abs(box - tight) <= 0.2 * extent + 1e-5)
    assert box[0] <= box[2] and box[1] <= box[3]
    assert box.min() >= 0 and box[2] <= 47 and box[3] <= 31


def test_box_jitter_clipped_at_image_edge():
    mask = np.ones((10, 10))
    for seed in range(10):
        box = mask_to_box(mask, jitter=0.5, rng=seed)
        assert box.min() >= 0 and box.max() <= 9


def test_rng_kinds_are_deterministic():
    mask = rect_mask()
    assert np.array_equal(mask_to_box(mask, 0.1, 3), mask_to_box(mask, 0.1, 3))
    a = mask_to_box(mask, 0.1, np.random.default_rng(5))
    b = mask_to_box(mask, 0.1, np.random.default_rng(5))
    c = mask_to_box(mask, 0.1, np.random.RandomState(5))
    d = mask_to_box(mask, 0.1, np.random.RandomState(5))
    assert np.array_equal(a, b) and np.array_equal(c, d)


def test_points_positive_inside_negative_outside():
    mask = rect_mask()
    for seed in range(10):
        coords, labels = sample_points(mask, num_pos=3, num_neg=2, rng=seed)
        assert coords.shape == (5, 2) and labels.shape == (5,)
        assert coords.dtype == np.float32 and labels.dtype == np.float32
        np.testing.assert_array_equal(labels, [1, 1, 1, 0, 0])
        x, y = coords[:, 0].astype(int), coords[:, 1].astype(int)
        assert mask[y[:3], x[:3]].all()
        assert not mask[y[3:], x[3:]].any()


def test_negatives_are_near_the_object():
    mask = rect_mask(shape=(200, 200), rows=(90, 109), cols=(90, 109))
    coords, _ = sample_points(mask, 0, 20, rng=0)
    # box grown by 25 % of its extent (5 px) on each side
    assert coords.min() >= 85 and coords.max() <= 114


def test_points_padding_when_region_too_small():
    mask = np.zeros((10, 10))
    mask[4, 4:6] = 1
    coords, labels = sample_points(mask, num_pos=5, num_neg=1, rng=0)
    np.testing.assert_array_equal(labels, [1, 1, -1, -1, -1, 0])
    np.testing.assert_array_equal(coords[2:5], 0)


def test_points_empty_and_full_masks():
    coords, labels = sample_points(np.zeros((6, 7)), 2, 2, rng=0)
    assert coords.shape == (4, 2) and np.all(labels == -1) and np.all(coords == 0)
    _, labels = sample_points(np.ones((6, 7)), 1, 2, rng=0, center=True)
    np.testing.assert_array_equal(labels, [1, -1, -1])


def test_center_point_is_distance_transform_maximum():
    mask = rect_mask(shape=(40, 60), rows=(5, 25), cols=(10, 50))
    (coords, labels), (coords2, _) = sample_points(mask, 1, 0, center=True), sample_points(mask, 1, 0, center=True)
    np.testing.assert_array_equal(coords, coords2)  # deterministic without rng
    edt = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    x, y = coords[0].astype(int)
    assert labels[0] == 1 and edt[y, x] == edt.max()
    np.testing.assert_array_equal(coords[0], [30, 15])  # middle of the equally deep plateau, not its end


def test_center_points_spread_and_inside():
    mask = rect_mask(shape=(40, 60), rows=(5, 25), cols=(10, 50))
    coords, labels = sample_points(mask, 3, 1, center=True)
    np.testing.assert_array_equal(labels, [1, 1, 1, 0])
    pos = coords[:3].astype(int)
    assert len({tuple(p) for p in pos}) == 3
    assert mask[pos[:, 1], pos[:, 0]].all()
    x, y = coords[3].astype(int)
    assert mask[y, x] == 0


def test_points_3d_order_is_xyz():
    vol = np.zeros((4, 10, 12), bool)
    vol[2, 3, 7] = True
    coords, labels = sample_points(vol, 1, 0, rng=0)
    np.testing.assert_array_equal(coords[0], [7, 3, 2])


def test_points_reject_negative_counts():
    with pytest.raises(ValueError, match="num_pos and num_neg"):
        sample_points(rect_mask(), -1, 0)


def two_blobs() -> np.ndarray:
    m = np.zeros((20, 20), np.uint8)
    m[2:5, 2:5] = 1
    m[10:15, 12:18] = 1
    return m


def test_connected_instances_and_diagonal_connectivity():
    parts = connected_instances(two_blobs())
    assert len(parts) == 2 and sum(int(p.sum()) for p in parts) == two_blobs().sum()
    diag = np.zeros((4, 4))
    diag[0, 0] = diag[1, 1] = 1
    assert len(connected_instances(diag)) == 1
    assert connected_instances(np.zeros((3, 3))) == []


def test_select_instance_returns_one_component():
    parts = connected_instances(two_blobs())
    seen = set()
    for seed in range(10):
        inst = select_instance(torch.from_numpy(two_blobs()), rng=seed)
        match = [i for i, p in enumerate(parts) if np.array_equal(p, inst)]
        assert len(match) == 1
        seen.add(match[0])
    assert seen == {0, 1}
    assert not select_instance(np.zeros((3, 3)), rng=0).any()


def test_select_class():
    lab = np.zeros((10, 10), np.int64)
    lab[1:3, 1:3] = 2
    lab[5:8, 5:8] = 5
    chosen = {select_class(lab, [1, 2, 5], rng=s)[1] for s in range(20)}
    assert chosen == {2, 5}  # class 1 is absent and never chosen
    binary, cls = select_class(lab, [5], rng=0)
    assert cls == 5 and binary.dtype == bool and binary.sum() == 9
    binary, cls = select_class(lab, [7], rng=0)
    assert cls == -1 and not binary.any()
    with pytest.raises(ValueError, match="class_ids is empty"):
        select_class(lab, [], rng=0)
