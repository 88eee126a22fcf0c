"""RandSliceWindowd: windows start on a slice holding an organ and run forwards or backwards; short volumes pad."""

from __future__ import annotations

import pytest
import torch

from sam2tune.transforms import RandSliceWindowd


def _volume(depth=10):
    label = torch.zeros(1, depth, 2, 2, dtype=torch.int16)
    label[0, 2:5] = 6  # the organ is on slices 2-4
    return {"image": torch.arange(float(depth)).view(1, depth, 1, 1).expand(1, depth, 2, 2), "label": label}


def test_backward_windows_start_on_the_organ_and_run_down():
    crop = RandSliceWindowd(window=3, reverse_prob=1.0, seed=0)
    for _ in range(10):
        out = crop(_volume())
        order = out["image"][0, :, 0, 0].tolist()
        assert order[0] in (2.0, 3.0, 4.0) and order == [order[0], order[0] - 1, order[0] - 2]
        source = _volume()["label"][0, :, 0, 0]
        assert bool(out["label"][0, 0].any()) and torch.equal(out["label"][0, :, 0, 0], source[[int(v) for v in order]])


def test_short_volumes_repeat_the_last_slice_and_seeds_repeat():
    out = RandSliceWindowd(window=6, reverse_prob=0.0)(_volume(depth=4))
    assert out["image"][0, :, 0, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 3.0, 3.0]
    a, b = RandSliceWindowd(window=3, seed=5), RandSliceWindowd(window=3, seed=5)
    runs = [[t(_volume())["image"][0, :, 0, 0].tolist() for _ in range(6)] for t in (a, b)]
    assert runs[0] == runs[1] and len({tuple(r) for r in runs[0]}) > 1  # same seed, same windows; not all one window
    with pytest.raises(TypeError, match="end_prob"):  # tried, no gain, removed
        RandSliceWindowd(window=3, end_prob=1.0)
