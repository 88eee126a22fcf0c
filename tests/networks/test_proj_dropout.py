"""SAM2Segmenter proj_dropout: dropout after the mask decoder's attention projections, seen by MC dropout."""

from __future__ import annotations

import pytest
import torch
from sam2.modeling.sam.transformer import Attention

from sam2tune.networks import SAM2Segmenter, mc_dropout_predict


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return SAM2Segmenter("tiny", 32, in_channels=1, num_prompt_tokens=1, attn_dropout=0.0, proj_dropout=0.3).eval()


def test_proj_dropout_layers_and_unchanged_state_dict(net):
    attns = [m for m in net.sam.sam_mask_decoder.modules() if isinstance(m, Attention)]
    assert attns and all(m.proj_dropout.p == 0.3 for m in attns)
    assert not any("proj_dropout" in k for k in net.state_dict())  # checkpoints stay compatible


def test_proj_dropout_is_stochastic_only_under_mc(net):
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(x), net(x))  # eval: deterministic
    _, var = mc_dropout_predict(net, 4, x)
    assert float(var.max()) > 0 and not net.training


def test_bad_proj_dropout(net):
    with pytest.raises(ValueError, match="proj_dropout"):
        net.set_projection_dropout(1.5)
