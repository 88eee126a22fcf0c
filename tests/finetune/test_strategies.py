"""apply_finetune: one optimizer step changes only the intended parameters; trainable counts per strategy."""

import copy
import logging

import pytest
import torch
import torch.nn.functional as F

from sam2tune.finetune import FinetuneConfig, apply_finetune, component_of, count_parameters, lora_layers, param_groups
from sam2tune.networks import ChannelAdapter

# Components a step may change under each strategy's defaults (plus the channel adapter, present in these tests).
ALLOWED = {
    "full": {"image_encoder", "prompt_encoder", "mask_decoder", "memory", "channel_adapter"},
    "decoder_only": {"mask_decoder", "channel_adapter"},
    "lora": {"lora", "channel_adapter"},
    "adapter": {"adapter", "channel_adapter"},
    "prompt": {"prompt_tokens", "channel_adapter"},
}
# Components that must change: with zero-initialised LoRA B / adapter up, only those receive gradient at step 0.
MUST_CHANGE = {
    "full": {"image_encoder", "mask_decoder", "channel_adapter"},
    "decoder_only": {"mask_decoder", "channel_adapter"},
    "lora": {"lora", "channel_adapter"},
    "adapter": {"adapter", "channel_adapter"},
    "prompt": {"prompt_tokens", "channel_adapter"},
}


@pytest.mark.parametrize("strategy", list(ALLOWED))
def test_one_step_changes_only_intended_parameters(base, strategy):
    torch.manual_seed(0)
    base.channel_adapter = ChannelAdapter(4)  # a 4-channel input: the 1x1 conv must train in every strategy
    net = apply_finetune(base, strategy).train()
    image = torch.rand(1, 4, 64, 64)
    prompts = {} if strategy == "prompt" else {"boxes": torch.tensor([[8.0, 8.0, 40.0, 48.0]])}
    target = torch.zeros(1, 1, 64, 64)
    target[..., 16:40, 16:40] = 1
    before = {k: v.detach().clone() for k, v in net.state_dict().items()}
    opt = torch.optim.AdamW(param_groups(net, lr=1e-2), lr=1e-2)
    F.binary_cross_entropy_with_logits(net(image, **prompts), target).backward()
    opt.step()
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert changed <= trainable, sorted(changed - trainable)[:5]
    components = {component_of(k) for k in changed}
    assert components <= ALLOWED[strategy]
    assert MUST_CHANGE[strategy] <= components
    if strategy == "lora":
        assert any(".lora_B." in k for k in changed if "image_encoder" in k)
        assert any(".lora_B." in k for k in changed if "sam_mask_decoder" in k)


def test_trainable_counts_per_strategy(tiny_base):
    total = sum(p.numel() for p in tiny_base.parameters())
    mask_decoder = sum(p.numel() for p in tiny_base.sam.sam_mask_decoder.parameters())
    counts = {}
    for strategy in ("full", "decoder_only", "lora", "adapter", "prompt"):
        net = apply_finetune(copy.deepcopy(tiny_base), strategy)
        counts[strategy] = count_parameters(net)["total"]
        if strategy == "lora":
            linears = [layer.get_base_layer() for layer in lora_layers(net).values()]
            lora_expected = sum(8 * (m.in_features + m.out_features) for m in linears)
        del net
    assert counts["full"] == (total, total)
    assert counts["decoder_only"] == (mask_decoder, total)
    assert counts["prompt"] == (1 * 256, total + 256)
    assert counts["lora"] == (lora_expected, total + lora_expected)
    dims = [b.dim_out for b in tiny_base.sam.image_encoder.trunk.blocks]
    adapter_expected = sum(2 * d * 32 + 32 + d for d in dims)
    assert counts["adapter"] == (adapter_expected, total + adapter_expected)
    # tiny at 64 px, 3 channels: the numbers reported in the docs.
    assert counts["lora"][0] == 314_624 and counts["adapter"][0] == 306_144 and counts["decoder_only"][0] == 4_215_109


def test_flags_override_strategy_defaults(base):
    net = apply_finetune(base, {"strategy": "lora", "train_mask_decoder": True, "lora_r": 2})
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert "sam.sam_mask_decoder.iou_prediction_head.layers.0.weight" in trainable
    assert not any(".base_layer." in n for n in trainable)
    assert {component_of(n) for n in trainable} == {"lora", "mask_decoder"}


def test_prompt_strategy_adds_tokens_and_keeps_existing_ones(base):
    assert base.prompt_tokens is None
    net = apply_finetune(base, FinetuneConfig(strategy="prompt", num_prompt_tokens=3))
    assert net.prompt_tokens.shape == (3, 256) and net.prompt_tokens.requires_grad
    assert count_parameters(net)["total"][0] == 3 * 256
    with pytest.raises(ValueError, match="num_prompt_tokens"):
        apply_finetune(_fresh_with_tokens(net, 2), "prompt")


def _fresh_with_tokens(net, n):
    clone = copy.deepcopy(net)
    del clone.finetune_config
    clone.prompt_tokens = torch.nn.Parameter(torch.zeros(n, 256))
    return clone


def test_decoder_only_trains_existing_prompt_tokens(base):
    base.prompt_tokens = torch.nn.Parameter(torch.zeros(2, 256))
    net = apply_finetune(base, "decoder_only")
    assert net.prompt_tokens.requires_grad


def test_apply_returns_same_module_logs_table_and_is_idempotent(base, caplog):
    with caplog.at_level(logging.INFO, logger="sam2tune.finetune.strategies"):
        net = apply_finetune(base, "adapter")
    assert net is base and net.finetune_config == FinetuneConfig(strategy="adapter")
    assert "trainable" in caplog.text and "adapter" in caplog.text
    assert apply_finetune(net, {"strategy": "adapter"}) is net  # same config: only re-freezes
    with pytest.raises(ValueError, match="already prepared"):
        apply_finetune(net, "lora")
    with pytest.raises(TypeError, match="SAM2Segmenter"):
        apply_finetune(torch.nn.Linear(2, 2), "full")


def test_activation_checkpointing_is_applied(base):
    from sam2tune.networks.checkpointing import is_activation_checkpointed

    apply_finetune(base, {"strategy": "prompt", "activation_checkpointing": True})
    assert is_activation_checkpointed(base)
