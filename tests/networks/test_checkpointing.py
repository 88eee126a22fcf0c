"""Activation checkpointing of Hiera blocks: same loss and gradients as the plain path, less saved activation memory."""

import copy

import pytest
import torch
from monai.losses import DiceCELoss

from sam2tune.finetune import apply_finetune
from sam2tune.networks import SAM2Segmenter
from sam2tune.networks.checkpointing import (
    disable_activation_checkpointing,
    enable_activation_checkpointing,
    is_activation_checkpointed,
)

IMAGE = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
BOXES = torch.tensor([[4.0, 6.0, 40.0, 50.0], [10.0, 10.0, 60.0, 30.0]])
LABEL = (torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(1)) > 0.5).float()


@pytest.fixture(scope="module")
def net() -> SAM2Segmenter:
    """LoRA (peft layers inside the blocks) + bottleneck adapters (forward hooks on the blocks), all non-zero."""
    torch.manual_seed(0)
    network = apply_finetune(
        SAM2Segmenter("tiny", 64, adapter_dim=8, num_prompt_tokens=0), {"strategy": "lora", "lora_dropout": 0.0}
    )
    with torch.no_grad():
        for name, p in network.named_parameters():
            if "lora_B" in name or "adapter.up" in name:
                p.normal_(0, 0.02)  # zero-initialised halves would make their partner's gradient trivially zero
            if ".adapter." in name:
                p.requires_grad_(True)  # let the hooked adapters train too, so their gradients are compared
    return network.train()


def _loss_and_grads(network: SAM2Segmenter) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    network.zero_grad(set_to_none=True)
    loss = DiceCELoss(sigmoid=True)(network(IMAGE, boxes=BOXES), LABEL)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in network.named_parameters() if p.grad is not None}


def _saved_bytes(network: SAM2Segmenter) -> int:
    """Bytes of tensors autograd keeps for backward during one forward (checkpointed blocks keep only inputs)."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        network(IMAGE, boxes=BOXES).sum()
    return total


def test_checkpointed_path_matches_plain_loss_and_gradients(net):
    disable_activation_checkpointing(net)
    plain_loss, plain_grads = _loss_and_grads(net)
    plain_saved = _saved_bytes(net)
    keys = list(net.state_dict())
    assert enable_activation_checkpointing(net) == len(net.sam.image_encoder.trunk.blocks)
    assert is_activation_checkpointed(net)
    ckpt_loss, ckpt_grads = _loss_and_grads(net)
    assert torch.allclose(plain_loss, ckpt_loss, atol=1e-6)
    assert plain_grads.keys() == ckpt_grads.keys()
    assert any("lora_A" in n for n in ckpt_grads) and any(".adapter.down" in n for n in ckpt_grads)
    for name, grad in plain_grads.items():
        assert torch.allclose(grad, ckpt_grads[name], rtol=1e-4, atol=1e-6), name
    assert any(g.abs().sum() > 0 for n, g in ckpt_grads.items() if "trunk" in n), "encoder gradients must flow"
    assert _saved_bytes(net) < 0.5 * plain_saved
    assert list(net.state_dict()) == keys  # checkpoints, LoRA names and adapter keys unchanged


def test_enable_is_idempotent_survives_deepcopy_and_disables(net):
    enable_activation_checkpointing(net)
    enable_activation_checkpointing(net)
    block = net.sam.image_encoder.trunk.blocks[0]
    assert type(block).__mro__[2].__name__ == "MultiScaleBlock"  # not wrapped twice
    clone = copy.deepcopy(net)
    assert is_activation_checkpointed(clone)
    with torch.no_grad():  # no grad: the plain forward runs, same output
        assert torch.allclose(clone(IMAGE, boxes=BOXES), net(IMAGE, boxes=BOXES))
    assert disable_activation_checkpointing(clone) == len(clone.sam.image_encoder.trunk.blocks)
    assert (
        not is_activation_checkpointed(clone)
        and type(clone.sam.image_encoder.trunk.blocks[0]).__name__ == "MultiScaleBlock"
    )


def test_rejects_non_sam_modules():
    with pytest.raises(TypeError, match="image_encoder.trunk.blocks"):
        enable_activation_checkpointing(torch.nn.Linear(2, 2))
