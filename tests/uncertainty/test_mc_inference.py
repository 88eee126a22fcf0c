"""MC-dropout inference on slice stacks, its split post-processing, and saving crops in place."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from sam2tune.engines.slice_stack import SliceStackInferer
from sam2tune.uncertainty import MCDropoutInferer, SaveNoduleCropd, SplitUncertaintyd, mc_stack_predict


class _Net(nn.Module):
    """(N, 1, H, W) -> (N, 1, H, W) logits = 4 * (x - 0.5), with optional dropout on the output."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.drop = nn.Dropout(p)
        self.calls: list[tuple] = []

    def forward(self, x, boxes=None):
        self.calls.append(tuple(x.shape) + ((tuple(boxes.shape),) if boxes is not None else ()))
        return self.drop(4 * (x - 0.5))


def test_slice_stack_inferer_shapes_and_prompt_repeat():
    net = _Net()
    x = torch.rand(2, 3, 8, 8)
    out = SliceStackInferer()(x, net, boxes=torch.zeros(2, 4))
    assert out.shape == (2, 3, 8, 8) and net.calls == [(6, 1, 8, 8, (6, 4))]
    assert torch.allclose(out[1, 2], 4 * (x[1, 2] - 0.5))


def test_mc_without_dropout_is_deterministic_entropy():
    x = torch.rand(1, 3, 4, 4)
    mean, unc = mc_stack_predict(_Net(0.0), x, num_samples=3)
    p = torch.sigmoid(4 * (x - 0.5))
    assert torch.allclose(mean, p, atol=1e-6)
    assert torch.allclose(unc, -(p * p.log2() + (1 - p) * (1 - p).log2()), atol=1e-4)
    _, std = mc_stack_predict(_Net(0.0), x, num_samples=3, uncertainty="std")
    assert float(std.abs().max()) == 0.0


def test_mc_with_dropout_varies_and_restores_mode():
    torch.manual_seed(0)
    net = _Net(0.5).eval()
    out = MCDropoutInferer(num_samples=8, uncertainty="std")(torch.rand(2, 3, 4, 4) + 0.6, net)
    assert out.shape == (2, 6, 4, 4) and float(out[:, 3:].max()) > 0  # dropout made the passes differ
    assert not net.training and not net.drop.training


def test_split_uncertainty_and_bad_shape():
    pred = torch.cat([torch.tensor([[[0.2, 0.7]]]).expand(3, 1, 2), torch.full((3, 1, 2), 0.4)])
    d = SplitUncertaintyd(threshold=0.5)({"pred": pred, "label": torch.zeros(3, 1, 2)})
    assert d["prob"].shape == (1, 3, 1, 2) and d["label"].shape == (1, 3, 1, 2)
    assert d["pred"][0, :, 0].tolist() == [[0.0, 1.0]] * 3 and float(d["uncertainty"].mean()) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="MCDropoutInferer"):
        SplitUncertaintyd()({"pred": torch.zeros(3, 2, 2)})


def test_save_nodule_crop_in_world_coordinates(tmp_path):
    affine = torch.eye(4, dtype=torch.float64)
    affine[:3, 3] = torch.tensor([5.0, 6.0, 7.0])
    prob = torch.rand(1, 3, 4, 5)
    SaveNoduleCropd(("prob", "pred"), str(tmp_path))({"prob": prob, "pred": (prob > 0.5).float(), "crop_affine": affine,
                                                      "id": "lung_009", "nodule": 2})
    img = nib.load(tmp_path / "lung_009_nodule2_prob.nii.gz")
    assert img.shape == (4, 5, 3) and np.allclose(img.affine[:3, 3], [5, 6, 7])
    assert np.allclose(img.get_fdata()[:, :, 1], prob[0, 1].numpy(), atol=1e-6)
    assert nib.load(tmp_path / "lung_009_nodule2_pred.nii.gz").get_data_dtype() == np.uint8


@pytest.mark.parametrize("stacked", [False, True], ids=["2d", "slice stacks"])
def test_mc_dropout_encodes_once_with_the_same_outputs(stacked):
    """Dropout sits after SAM2's image encoder: one encoding feeds every pass, and the passes give the same
    probabilities as re-encoding each time, for the same random state."""
    from sam2tune.networks import SAM2Segmenter
    from sam2tune.networks.mc_dropout import encodes_once, mc_dropout_predict

    torch.manual_seed(0)
    net = SAM2Segmenter("tiny", 64, in_channels=1, dropout=0.3).eval()
    x = torch.rand(2, 3, 48, 48) if stacked else torch.rand(2, 1, 48, 48)
    boxes = torch.tensor([[8.0, 8.0, 30.0, 30.0], [10.0, 12.0, 40.0, 36.0]])
    calls = []
    handle = net.sam.image_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        results = {}
        for reuse in (False, True):
            calls.clear()
            torch.manual_seed(1)
            if stacked:
                mean, unc = mc_stack_predict(net, x, 5, "std", boxes=boxes) if reuse else _no_reuse_stack(net, x, boxes)
            else:
                mean, var = mc_dropout_predict(net, 5, x, boxes=boxes, reuse_encoding=reuse)
                unc = var.sqrt()
            results[reuse] = (mean, unc, len(calls))
    finally:
        handle.remove()
    assert encodes_once(net)
    assert results[False][2] == 5 and results[True][2] == 1  # five encodings before, one now
    torch.testing.assert_close(results[True][0], results[False][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(results[True][1], results[False][1], atol=1e-5, rtol=1e-4)
    assert float(results[True][1].max()) > 0  # the passes did differ: dropout was active


def _no_reuse_stack(net, x, boxes):
    from sam2tune.networks.mc_dropout import mc_dropout_predict
    from sam2tune.uncertainty.inferer import _StackNet

    wrapper = _StackNet(net).train(net.training)
    mean, var = mc_dropout_predict(wrapper, 5, x, boxes=boxes, reuse_encoding=False)
    return mean, var.sqrt()
