"""Atomic writes leave either the old file or the new one, never a partial file."""

import json
import os

import pytest
import torch

from sam2tune.utils import atomic_torch_save, atomic_write_json


def test_roundtrip_and_no_temp_left(tmp_path):
    path = atomic_torch_save({"w": torch.ones(3)}, str(tmp_path / "m.pt"))
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(3))
    atomic_write_json({"a": torch.tensor(1.5)}, str(tmp_path / "s.json"))
    assert json.loads((tmp_path / "s.json").read_text()) == {"a": 1.5}
    assert sorted(os.listdir(tmp_path)) == ["m.pt", "s.json"]


def test_failed_write_keeps_previous_file(tmp_path):
    path = str(tmp_path / "m.pt")
    atomic_torch_save({"w": torch.zeros(2)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_torch_save({"w": Unpicklable()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.zeros(2))
    assert os.listdir(tmp_path) == ["m.pt"]
