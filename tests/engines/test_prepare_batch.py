"""PromptPrepareBatch: which prompts reach the network, and clear errors."""

import pytest
import torch

from sam2tune.engines import PromptPrepareBatch


def _batch():
    return {"image": torch.rand(2, 3, 8, 8), "label": torch.zeros(2, 1, 8, 8),
            "box": torch.tensor([[1.0, 1, 5, 5]] * 2), "point_coords": torch.zeros(2, 1, 2),
            "point_labels": torch.ones(2, 1)}


def test_boxes_only():
    image, label, args, kwargs = PromptPrepareBatch(["boxes"])(_batch(), "cpu")
    assert image.shape == (2, 3, 8, 8) and label.shape == (2, 1, 8, 8) and args == ()
    assert set(kwargs) == {"boxes"} and kwargs["boxes"].shape == (2, 4)


def test_points_shorthand_and_prompt_free():
    _, _, _, kwargs = PromptPrepareBatch(["boxes", "points"])(_batch(), "cpu")
    assert set(kwargs) == {"boxes", "point_coords", "point_labels"}
    assert PromptPrepareBatch([])(_batch(), "cpu")[3] == {}


def test_missing_key_and_unknown_kind():
    batch = _batch()
    del batch["box"]
    with pytest.raises(KeyError, match="SimulatePromptsd"):
        PromptPrepareBatch(["boxes"])(batch, "cpu")
    with pytest.raises(ValueError, match="Unknown prompt kinds"):
        PromptPrepareBatch(["lasso"])


def test_no_label_at_inference():
    batch = _batch()
    del batch["label"]
    assert PromptPrepareBatch(["boxes"])(batch, "cpu")[1] is None
