"""RNGState: every generator kind round-trips through a weights_only checkpoint and draws the same again."""

from __future__ import annotations

import logging
import random

import numpy as np
import torch

from sam2tune.utils.rng_state import RNGState, find_generators


class _Owner:
    """Generators in attributes and lists, next to data that must not be walked into."""

    def __init__(self) -> None:
        self.legacy = np.random.RandomState(1)
        self.items = [np.random.default_rng(2), {"data": np.random.default_rng(9)}]
        self.gen = torch.Generator().manual_seed(3)
        self.net = torch.nn.Linear(2, 2)
        self.me = self  # cycles are walked once


def _draws(owner: _Owner) -> list:
    return [random.random(), float(np.random.rand()), float(torch.rand(1)), float(owner.legacy.rand()),
            float(owner.items[0].random()), float(torch.rand(1, generator=owner.gen))]


def test_find_generators_names_each_by_its_path():
    found = find_generators(_Owner(), "root")
    assert sorted(found) == ["root.gen", "root.items.0", "root.legacy"]  # dict items are data: not walked


def test_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    owner = _Owner()
    rng = RNGState({"owner": owner})
    _draws(owner)  # advance every stream first: restoring must not merely re-seed
    torch.save(rng.state_dict(), tmp_path / "rng.pt")
    expected = _draws(owner)
    rng.load_state_dict(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert _draws(owner) == expected


def test_generators_missing_from_the_checkpoint_are_named(caplog):
    state = RNGState({"a": _Owner()}).state_dict()
    with caplog.at_level(logging.WARNING):
        RNGState({"b": _Owner()}).load_state_dict(state)
    assert "not restored" in caplog.text and "a.legacy" in caplog.text and "b.legacy" in caplog.text
