"""The REFUGE transform chain as a bundle JSON would declare it: alignment on non-square images, prompts, collate."""

import json

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import DataLoader, Dataset

from sam2tune.data import refuge_datalist
from sam2tune.data.phantoms.refuge import ellipse_mask, write_refuge_phantoms

IMAGE_SIZE = 64

TRAIN = [
    {"_target_": "sam2tune.transforms.LoadJPEGd", "keys": "image"},
    {"_target_": "sam2tune.transforms.LoadRaterMeand", "keys": "label", "threshold": 0.5},
    {
        "_target_": "Resized",
        "keys": ["image", "label"],
        "spatial_size": [IMAGE_SIZE, IMAGE_SIZE],
        "mode": ["bilinear", "nearest"],
    },
    {"_target_": "RandFlipd", "keys": ["image", "label"], "prob": 0.5, "spatial_axis": 1},
    {"_target_": "RandRotate90d", "keys": ["image", "label"], "prob": 0.5},
    {
        "_target_": "sam2tune.transforms.SimulatePromptsd",
        "keys": "label",
        "mode": "box+points",
        "num_pos": 1,
        "num_neg": 1,
        "box_jitter": 0.1,
    },
]
EVAL = TRAIN[:3] + [
    {
        "_target_": "sam2tune.transforms.SimulatePromptsd",
        "keys": "label",
        "mode": "box",
        "num_pos": 1,
        "num_neg": 0,
        "box_jitter": 0.0,
        "center_points": True,
    },
]


def compose(chain):
    parser = ConfigParser({"t": {"_target_": "Compose", "transforms": chain}})
    return parser.get_parsed_content("t")


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """Non-square phantoms (H=80, W=128), so a transposed loader could not hide."""
    out = tmp_path_factory.mktemp("wide")
    summary = write_refuge_phantoms(str(out), cases=4, seed=2, size=(80, 128))
    return out, json.loads(open(summary["truth_file"]).read())


def test_native_size_alignment(wide):
    out, truth = wide
    t = compose(EVAL[:2])
    item = refuge_datalist(str(out), "test")[0]
    d = t(item)
    assert d["image"].shape == (3, 80, 128) and d["label"].shape == (1, 80, 128)
    cup = ellipse_mask((80, 128), truth["cases"][item["id"]]["cup"])
    lab = d["label"][0].numpy() > 0.5
    assert 2 * (lab & cup).sum() / (lab.sum() + cup.sum()) > 0.9
    grey = d["image"].numpy().mean(0)
    assert grey[lab].mean() > grey[~lab].mean() + 0.1  # the label sits on the bright cup of the image


def test_eval_chain_box_is_tight_around_cup(wide):
    out, _ = wide
    d = compose(EVAL)(refuge_datalist(str(out), "test")[1])
    assert d["image"].shape == (3, IMAGE_SIZE, IMAGE_SIZE) and d["label"].shape == (1, IMAGE_SIZE, IMAGE_SIZE)
    ys, xs = np.nonzero(d["label"][0].numpy())
    np.testing.assert_array_equal(d["box"], [xs.min(), ys.min(), xs.max(), ys.max()])
    assert d["prompt_valid"] == 1.0 and "point_coords" not in d


def test_train_chain_collates_and_repeats(wide):
    out, _ = wide
    data = refuge_datalist(str(out), "train", val_fraction=0.0)

    def first_batch(seed):
        # MONAI's DataLoader reseeds the transforms from torch's generator (set_random_state would be overridden)
        torch.manual_seed(seed)
        return next(iter(DataLoader(Dataset(data, compose(TRAIN)), batch_size=len(data))))

    a, b = first_batch(1), first_batch(1)
    n = len(data)
    assert a["image"].shape == (n, 3, IMAGE_SIZE, IMAGE_SIZE) and a["image"].dtype == torch.float32
    assert a["box"].shape == (n, 4) and a["point_coords"].shape == (n, 2, 2) and a["point_labels"].shape == (n, 2)
    for k in ("image", "label", "box", "point_coords"):
        assert torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k]))
    lab = a["label"][:, 0].numpy()
    for i in range(n):  # the positive click lands on the (augmented) label
        x, y = a["point_coords"][i, 0].long().tolist()
        assert lab[i, y, x] == 1
