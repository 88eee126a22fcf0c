"""Propagation diagnostics: per-object slice tables and the memory identity check, plus the CLI on a phantom."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from sam2tune.networks import SAM2Segmenter
from sam2tune.networks.propagation_diagnostics import (
    lands_on,
    memory_identity,
    object_slice_table,
    relative_spread,
)
from sam2tune.networks.propagator import ObjectPrompt

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return SAM2Segmenter("tiny", 64, in_channels=1).eval()


def test_relative_spread_is_symmetric_and_scaled():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    s = relative_spread(x)
    assert torch.allclose(s, s.T) and torch.allclose(s.diagonal(), torch.zeros(4))
    assert (
        s[0, 1] == 0 and torch.isclose(s[0, 2], torch.tensor(2**0.5)) and torch.isclose(s[0, 3], torch.tensor(1 / 1.5))
    )


def test_memory_identity_separates_different_prompts_only(net):
    torch.manual_seed(1)
    vol = torch.rand(6, 1, 48, 48)
    prompts = [
        ObjectPrompt(2, box=[4, 4, 16, 16]),
        ObjectPrompt(2, box=[4, 4, 16, 16]),
        ObjectPrompt(2, box=[28, 28, 44, 44]),
    ]
    out = memory_identity(net, vol, prompts)
    for key in ("memory", "conditioned"):
        assert out[key].shape == (3, 3)
        assert float(out[key][0, 1]) < 1e-5  # the same prompt gives the same memory
        assert float(out[key][0, 2]) > 1e-3  # a box elsewhere gives another memory
    backward = memory_identity(net, vol, prompts, step=-1)
    assert float(backward["conditioned"][0, 2]) > 1e-3
    with pytest.raises(ValueError, match="one key slice"):
        memory_identity(net, vol, [ObjectPrompt(1, box=[0, 0, 4, 4]), ObjectPrompt(2, box=[0, 0, 4, 4])])
    with pytest.raises(ValueError, match="non-zero"):
        memory_identity(net, vol, prompts, step=0)
    with pytest.raises(ValueError, match="outside the volume"):
        memory_identity(net, vol, [ObjectPrompt(5, box=[0, 0, 4, 4])])


def test_object_slice_table_scores_each_object_own_mask(net):
    vol = torch.rand(5, 1, 48, 48)
    label = np.zeros((5, 48, 48), np.uint8)
    label[1:4, 10:20, 10:20] = 3
    rows = object_slice_table(net, vol, label, [[ObjectPrompt(2, mask=(label[2] == 3).astype(np.float32))]], [3])
    key = [r for r in rows if r["offset"] == 0]
    assert len(key) == 1 and key[0]["slice"] == 2 and key[0]["label_voxels"] == 100 and key[0]["dice"] > 0.8
    assert key[0]["lands_on"] == 3  # the prompted slice's mask lies on its own organ
    assert {r["slice"] for r in rows if r["label_voxels"]} == {1, 2, 3}  # every labelled slice has a row
    assert all(0.0 <= r["dice"] <= 1.0 for r in rows)


def test_cli_writes_both_tables(tmp_path):
    from sam2tune.data.phantoms.btcv import write_btcv_phantoms
    from sam2tune.utils import atomic_torch_save

    write_btcv_phantoms(str(tmp_path / "btcv"), cases=2, seed=0, size=48, depth=8, organs=[1, 6])
    torch.manual_seed(0)
    atomic_torch_save(SAM2Segmenter("tiny", 64, in_channels=1).state_dict(), str(tmp_path / "model.pt"))
    spec = importlib.util.spec_from_file_location("diagnose_propagation", REPO / "scripts" / "diagnose_propagation.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    img = tmp_path / "btcv" / "img" / "img0001.nii.gz"
    lab = tmp_path / "btcv" / "label" / img.name.replace("img", "label")
    result = cli.main(["--model", str(tmp_path / "model.pt"), "--image", str(img), "--label", str(lab), "--image_size",
                       "64", "--out", str(tmp_path / "out")])
    rows = list(csv.DictReader(open(tmp_path / "out" / "object_slices.csv")))
    assert {int(r["organ"]) for r in rows} == {1, 6} and len(rows) == len(result["rows"])
    with pytest.raises(SystemExit, match="No organ"):
        cli.main(["--model", str(tmp_path / "model.pt"), "--image", str(img), "--label", str(lab), "--image_size", "64",
                  "--organs", "4", "--out", str(tmp_path / "out2")])


def test_lands_on_names_the_label_under_most_of_the_mask():
    label = np.zeros((8, 8), np.uint8)
    label[:4, :4], label[4:, 4:] = 7, 1
    pred = np.zeros((8, 8), bool)
    pred[3:8, 3:8] = True  # 16 voxels on organ 1, 1 on organ 7, 8 on background
    assert lands_on(pred, label) == (1, 16)
    assert lands_on(np.zeros((8, 8), bool), label) == (-1, 0)
