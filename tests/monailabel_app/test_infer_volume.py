"""MONAI Label 3D interactive infer without a server: clicks / ROI -> SAM2 memory propagation both ways -> IJK mask.

A real BundleModel of bundles/abdomen_ct_sam2 (sam2 tiny at 64 px, random init, CPU). Random weights give no
meaningful masks, so the tests check the wiring: what reaches `propagate_volume`, and how known logits land in
the written (I, J, K) mask. The volume has I != J so a missed row/column transposition shows.
"""

from __future__ import annotations

import threading

import nibabel as nib
import numpy as np
import pytest
import torch

import sam2tune.monailabel.infer as infer_mod
from sam2tune.monailabel.app import bundle_labels
from sam2tune.monailabel.infer import SAM2InferTask
from sam2tune.monailabel.model import BundleModel
from sam2tune.monailabel.settings import AppSettings
from sam2tune.networks.propagator import NO_OBJECT_LOGIT

NI, NJ, NK = 40, 32, 10  # IJK size of the synthetic CT


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """Interactive 3D task of the BTCV bundle, tiny network built lazily on first use."""
    settings = AppSettings(
        model_dir=str(tmp_path_factory.mktemp("model")), sam2_variant="tiny", image_size=64, device="cpu"
    )
    torch.manual_seed(0)
    model = BundleModel("abdomen_ct_sam2", settings)
    return SAM2InferTask(model, bundle_labels(model.metadata, "abdomen_ct_sam2"), dimension=model.dimension)


@pytest.fixture(scope="module")
def ct(tmp_path_factory) -> str:
    """NIfTI (I, J, K) in HU: soft tissue background and a bright blob through every slice, non-identity affine."""
    hu = np.full((NI, NJ, NK), -100.0, np.float32)
    hu[10:25, 8:18, :] = 200.0
    affine = np.diag([0.8, 0.7, 2.5, 1.0])
    path = str(tmp_path_factory.mktemp("ct") / "ct.nii.gz")
    nib.save(nib.Nifti1Image(hu, affine), path)
    return path


def _read(path: str) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(path)
    return np.asarray(img.dataobj), img.affine


def _low(logits: torch.Tensor) -> torch.Tensor:
    """What a fake propagation returns as SAM2's low-res logits (the model is 64 px: 16 x 16), slice k filled with k."""
    return torch.arange(logits.shape[1], dtype=torch.float32)[None, :, None, None].expand(1, -1, 16, 16).clone()


def test_clicks_and_roi_go_through_memory_propagation_both_ways(task, ct, monkeypatch):
    calls = []

    def spy(net, volume, prompts, chunk_size=16, directions="both", return_low_res=False):
        out = real(net, volume, prompts, chunk_size, directions, return_low_res)
        calls.append({"volume": volume.clone(), "prompts": prompts, "directions": directions, "out": out})
        return out

    real = infer_mod.propagate_volume
    monkeypatch.setattr(infer_mod, "propagate_volume", spy)
    request = {"image": ct, "foreground": [[15, 12, 5]], "background": [[2, 3, 5]], "roi": [10, 8, 25, 18, 1, 3]}
    path, result = task(request)

    assert len(calls) == 1
    call = calls[0]
    assert call["directions"] == "both"
    # (D, C, H, W) = (NK, 1, NJ, NI): model rows are J, windowed to [0, 1] with the bundle's HU window
    assert tuple(call["volume"].shape) == (NK, 1, NJ, NI)
    assert float(call["volume"][4, 0, 12, 15]) > float(call["volume"][4, 0, 3, 2])
    (obj,) = call["prompts"]  # one object: the requested label
    # prompted slices are 2 (ROI middle) and 5 (clicks): the middle one of the sorted list is the key slice
    assert [p.slice for p in obj] == [5, 2]
    assert obj[0].points == [[15.0, 12.0], [2.0, 3.0]] and obj[0].point_labels == [1, 0] and obj[0].box is None
    assert obj[1].box == [10.0, 8.0, 25.0, 18.0] and obj[1].points is None
    logits, scores, low = call["out"]
    assert low.shape == (1, NK, 16, 16)  # SAM2 low-res logits, kept by the session for the next correction
    assert logits.shape == (1, NK, NJ, NI)
    # the propagator reached slices above and below the key slice
    assert bool((scores[0, :5] > NO_OBJECT_LOGIT).all()) and bool((scores[0, 6:] > NO_OBJECT_LOGIT).all())

    mask, affine = _read(path)
    assert mask.shape == (NI, NJ, NK)
    np.testing.assert_allclose(affine, np.diag([0.8, 0.7, 2.5, 1.0]), atol=1e-5)
    expected = (torch.sigmoid(logits[0]) >= 0.5).numpy().transpose(2, 1, 0)
    np.testing.assert_array_equal(mask, expected)
    assert result["foreground_voxels"] == int(expected.sum())


def test_known_logits_fill_non_prompted_slices_in_ijk(task, ct, monkeypatch):
    seen = {}

    def fake(net, volume, prompts, chunk_size=16, directions="both", return_low_res=False):
        # the model lock must be held while the shared network runs: another thread cannot take it
        def try_lock():
            seen["free"] = task.model.lock.acquire(blocking=False)
            if seen["free"]:
                task.model.lock.release()

        probe = threading.Thread(target=try_lock)
        probe.start()
        probe.join()
        seen["directions"], seen["key"] = directions, prompts[0][0].slice
        logits = torch.full((1, volume.shape[0], *volume.shape[-2:]), -8.0)
        logits[0, :9, 4:20, 30:36] = 8.0  # rows = J 4..19, cols = I 30..35, on every slice but the last
        logits[0, 9] = NO_OBJECT_LOGIT  # e.g. the object ends before the last slice
        return logits, torch.zeros(1, volume.shape[0]), _low(logits)

    monkeypatch.setattr(infer_mod, "propagate_volume", fake)
    path, result = task({"image": ct, "foreground": [[32, 10, 4]]})
    assert seen == {"free": False, "directions": "both", "key": 4}
    mask, _ = _read(path)
    assert mask.shape == (NI, NJ, NK)
    want = np.zeros((NI, NJ, NK), np.uint8)
    want[30:36, 4:20, :9] = 1
    np.testing.assert_array_equal(mask, want)  # slices below (0..3) and above (5..8) the click are written
    assert result["foreground_voxels"] == 6 * 16 * 9


def test_propagate_false_predicts_only_prompted_slices(task, ct, monkeypatch):
    def no_propagation(*args, **kwargs):
        raise AssertionError("propagate_volume must not run when the request says propagate: false")

    predicted = []

    def predict(model, x, prompt, mask_prompt=None, return_low_res=False, cache_key=None):
        assert cache_key[0] == ct and cache_key[2] in (3, 7)  # (image file, mtime, slice): the embedding cache key
        predicted.append((x.shape, None if prompt is None else prompt.points.tolist()))
        prob = np.ones(x.shape[-2:], np.float32)
        return (prob, torch.zeros(1, 1, 16, 16)) if return_low_res else prob

    monkeypatch.setattr(infer_mod, "propagate_volume", no_propagation)
    monkeypatch.setattr(infer_mod, "predict_slice", predict)
    path, _ = task({"image": ct, "foreground": [[15, 12, 3], [16, 12, 7]], "propagate": "false"})
    assert predicted == [((1, NJ, NI), [[15.0, 12.0]]), ((1, NJ, NI), [[16.0, 12.0]])]
    mask, _ = _read(path)
    assert mask.shape == (NI, NJ, NK)
    assert mask.sum(axis=(0, 1)).nonzero()[0].tolist() == [3, 7]
    assert bool(mask[:, :, [3, 7]].all())


def test_requested_organ_is_written_with_its_label_value(task, ct, monkeypatch):
    from fastapi import HTTPException

    assert task.labels["spleen"] == 1 and task.labels["liver"] == 6 and len(task.labels) == 13  # from channel_def

    def fake(net, volume, prompts, chunk_size=16, directions="both", return_low_res=False):
        logits = torch.full((1, volume.shape[0], *volume.shape[-2:]), -8.0)
        logits[0, :, 4:20, 30:36] = 8.0
        return logits, torch.zeros(1, volume.shape[0]), _low(logits)

    monkeypatch.setattr(infer_mod, "propagate_volume", fake)
    path, result = task({"image": ct, "foreground": [[32, 10, 4]], "label": "liver"})
    mask, _ = _read(path)
    assert set(np.unique(mask).tolist()) == {0, 6} and result["label_names"]["liver"] == 6
    with pytest.raises(HTTPException) as err:
        task({"image": ct, "foreground": [[32, 10, 4]], "label": "kidneys"})
    assert err.value.status_code == 400 and "has no label 'kidneys'" in err.value.detail


def test_correction_on_a_slice_becomes_the_key_and_repropagates(task, ct, monkeypatch):
    """A session's new click on slice k makes k the key slice; the other prompted slices follow as prompts."""
    calls = []

    def fake(net, volume, prompts, chunk_size=16, directions="both", return_low_res=False):
        calls.append((directions, [(p.slice, p.points, p.point_labels, p.box) for p in prompts[0]],
                      [p.mask_logits for p in prompts[0]]))
        logits = torch.full((1, volume.shape[0], *volume.shape[-2:]), -8.0)
        logits[0, :, 8:18, 10:25] = 8.0
        logits[0, 7, 20:26, 30:36] = 0.2  # slice 7 holds the only uncertain pixels (J 20..25, I 30..35)
        return logits, torch.zeros(1, volume.shape[0]), _low(logits)

    monkeypatch.setattr(infer_mod, "propagate_volume", fake)
    first = {"foreground": [[15, 12, 2], [16, 12, 8]], "label": "spleen", "reset": True}
    _, r1 = task({**first, "image": ct})
    assert r1["session"] == {"refined": False, "reason": "reset", "clicks": 2, "new_clicks": 0, "key_slice": 8}
    assert calls[-1][1][0][0] == 8  # fresh: the middle of the prompted slices [2, 8]
    assert all(m is None for m in calls[-1][2])  # nothing to feed back yet
    second = {"image": ct, "foreground": [[15, 12, 2], [16, 12, 8]], "background": [[33, 22, 5]], "label": "spleen"}
    _, r2 = task(second)
    assert r2["session"] == {"refined": True, "reason": "extended", "clicks": 3, "new_clicks": 1, "key_slice": 5}
    directions, objs, fed = calls[-1]
    assert directions == "both" and [o[0] for o in objs] == [5, 2, 8]  # the corrected slice leads, the others follow
    # the previous answer's low-res logits on the corrected slice go back as SAM's mask prompt; only there
    assert fed[0] is not None and tuple(fed[0].shape[-2:]) == (16, 16) and bool((fed[0].float() == 5).all())
    assert fed[1] is None and fed[2] is None
    assert objs[0][1] == [[33.0, 22.0]] and objs[0][2] == [0]
    assert objs[1][1] == [[15.0, 12.0]] and objs[2][1] == [[16.0, 12.0]]
    # suggested click: on the slice with the uncertain pixels, in IJK, flipping the prediction there
    s = r2["suggested_click"]
    assert s["point"][2] == 7 and 30 <= s["point"][0] < 36 and 20 <= s["point"][1] < 26
    assert s["label"] == "negative" and 0.5 <= s["score"] <= 1.0  # p = sigmoid(0.2) > 0.5: called object
    _, r3 = task({**second, "propagate": False})  # another option: starts over
    assert r3["session"]["reason"] == "options changed" and "key_slice" not in r3["session"]
