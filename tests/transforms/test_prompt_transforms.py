"""SimulatePromptsd: fixed shapes per mode, empty labels, determinism, class/instance selection, eval clicks."""

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from monai.transforms import Compose
from scipy import ndimage

from sam2tune.transforms import SimulatePromptsd


def label_with(*boxes, shape=(32, 40), value=1):
    lab = np.zeros((1, *shape), np.float32)
    for r0, r1, c0, c1 in boxes:
        lab[0, r0:r1, c0:c1] = value
    return lab


@pytest.mark.parametrize(
    "mode, keys",
    [
        ("box", {"box"}),
        ("points", {"point_coords", "point_labels"}),
        ("box+points", {"box", "point_coords", "point_labels"}),
        ("none", set()),
    ],
)
def test_keys_and_shapes_per_mode(mode, keys):
    t = SimulatePromptsd("label", mode=mode, num_pos=2, num_neg=1, box_jitter=0.1)
    t.set_random_state(0)
    out = t({"label": label_with((4, 12, 5, 20))})
    prompt_keys = {"box", "point_coords", "point_labels"}
    assert prompt_keys & set(out) == keys
    assert out["prompt_valid"] == 1.0 and out["prompt_class"] == 1
    if "box" in keys:
        assert out["box"].shape == (4,) and out["box"].dtype == np.float32
    if "point_coords" in keys:
        assert out["point_coords"].shape == (3, 2) and out["point_labels"].shape == (3,)
        np.testing.assert_array_equal(out["point_labels"], [1, 1, 0])


def test_empty_label_never_crashes():
    t = SimulatePromptsd("label", mode="box+points", num_pos=2, num_neg=2, box_jitter=0.2)
    out = t({"label": np.zeros((1, 16, 16), np.float32)})
    assert out["prompt_valid"] == 0.0
    np.testing.assert_array_equal(out["box"], np.zeros(4))
    assert out["point_coords"].shape == (4, 2) and np.all(out["point_labels"] == -1)


def test_eval_mode_tight_box_and_central_click():
    lab = label_with((4, 12, 5, 25))
    t = SimulatePromptsd("label", mode="box+points", num_pos=1, box_jitter=0.0, center_points=True)
    a, b = t({"label": lab}), t({"label": lab})
    np.testing.assert_array_equal(a["box"], [5, 4, 24, 11])
    np.testing.assert_array_equal(a["point_coords"], b["point_coords"])
    edt = ndimage.distance_transform_edt(np.pad(lab[0], 1))[1:-1, 1:-1]
    x, y = a["point_coords"][0].astype(int)
    assert edt[y, x] == edt.max()


def test_determinism_with_set_random_state_and_compose():
    lab = label_with((4, 12, 5, 25), (20, 28, 10, 30))

    def run(seed):
        c = Compose([SimulatePromptsd("label", mode="box+points", num_pos=2, num_neg=2, box_jitter=0.2, instance=True)])
        c.set_random_state(seed)
        return [c({"label": lab}) for _ in range(3)]

    first, again, other = run(7), run(7), run(8)
    for x, y in zip(first, again, strict=True):
        for k in ("box", "point_coords", "point_labels", "label"):
            np.testing.assert_array_equal(np.asarray(x[k]), np.asarray(y[k]))
    assert any(not np.array_equal(x["box"], y["box"]) for x, y in zip(first, other, strict=True))


def test_instance_reduces_label_to_one_component():
    lab = MetaTensor(torch.from_numpy(label_with((2, 6, 2, 6), (20, 28, 10, 30))), meta={"filename_or_obj": "x"})
    t = SimulatePromptsd("label", mode="box", instance=True)
    boxes = set()
    for seed in range(12):
        t.set_random_state(seed)
        out = t({"label": lab})
        new = out["label"]
        assert isinstance(new, MetaTensor) and new.meta["filename_or_obj"] == "x" and new.shape == (1, 32, 40)
        assert int(new.sum()) in (16, 160)
        ys, xs = np.nonzero(new[0].numpy())
        np.testing.assert_array_equal(out["box"], [xs.min(), ys.min(), xs.max(), ys.max()])
        boxes.add(tuple(out["box"]))
    assert len(boxes) == 2


def test_class_ids_pick_a_present_class():
    lab = label_with((2, 6, 2, 6), value=2) + label_with((20, 28, 10, 30), value=3)
    t = SimulatePromptsd("label", mode="box", class_ids=[1, 2, 3])
    seen = set()
    for seed in range(12):
        t.set_random_state(seed)
        out = t({"label": lab})
        cls = out["prompt_class"]
        assert cls in (2, 3)
        np.testing.assert_array_equal(out["label"][0], (lab[0] == cls).astype(np.float32))
        seen.add(cls)
    assert seen == {2, 3}
    out = SimulatePromptsd("label", class_ids=[5])({"label": lab})
    assert out["prompt_class"] == -1 and out["prompt_valid"] == 0.0 and out["label"].sum() == 0


def test_collate_mixes_empty_and_full_labels():
    data = [{"label": label_with((4, 12, 5, 25))}, {"label": np.zeros((1, 32, 40), np.float32)}]
    t = SimulatePromptsd("label", mode="box+points", num_pos=1, num_neg=1, box_jitter=0.1)
    batch = next(iter(DataLoader(Dataset(data, t), batch_size=2)))
    assert batch["box"].shape == (2, 4) and batch["point_coords"].shape == (2, 2, 2)
    assert batch["point_labels"].shape == (2, 2) and batch["prompt_valid"].tolist() == [1.0, 0.0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode must be one of"):
        SimulatePromptsd("label", mode="boxes")
    with pytest.raises(ValueError, match="exactly one label key"):
        SimulatePromptsd(["a", "b"])
    with pytest.raises(ValueError, match="box_jitter"):
        SimulatePromptsd("label", box_jitter=1.5)
    with pytest.raises(ValueError, match=r"\(1, H, W\)"):
        SimulatePromptsd("label")({"label": np.zeros((2, 8, 8))})
