"""Parameter counts per component, the printed table, and optimizer parameter groups."""

import pytest
import torch

from sam2tune.finetune import COMPONENTS, apply_finetune, count_parameters, format_parameter_table, param_groups
from sam2tune.networks import ChannelAdapter


def test_counts_cover_every_parameter_in_a_fixed_order(tiny_base):
    counts = count_parameters(tiny_base)
    assert list(counts) == [*COMPONENTS, "total"]
    total = sum(p.numel() for p in tiny_base.parameters())
    assert counts["total"][1] == total == sum(v[1] for k, v in counts.items() if k != "total")
    assert counts["mask_decoder"][1] == sum(p.numel() for p in tiny_base.sam.sam_mask_decoder.parameters())
    assert counts["prompt_tokens"] == (0, 0) and counts["lora"] == (0, 0)


def test_table_lists_components_and_percentages(base):
    net = apply_finetune(base, "prompt")
    table = format_parameter_table(net)
    lines = table.splitlines()
    assert lines[0].split() == ["component", "trainable", "total", "trainable", "%"]
    assert len(lines) == len(COMPONENTS) + 2
    row = next(line for line in lines if line.startswith("prompt_tokens"))
    assert row.split()[1:] == ["256", "256", "100.00"]
    assert format_parameter_table(count_parameters(net)) == table


def test_param_groups_split_encoder_and_rest(base):
    base.channel_adapter = ChannelAdapter(5)
    net = apply_finetune(base, {"strategy": "full", "encoder_lr_mult": 0.1})
    groups = param_groups(net, lr=1e-3, encoder_lr_mult=0.1, weight_decay=0.01)
    assert [g["name"] for g in groups] == ["image_encoder", "decoder"]  # main group last: history logs its lr
    assert groups[0]["lr"] == pytest.approx(1e-4) and groups[1]["lr"] == 1e-3
    assert all(g["weight_decay"] == 0.01 for g in groups)
    encoder_ids = {id(p) for p in net.sam.image_encoder.parameters()}
    assert {id(p) for p in groups[0]["params"]} == encoder_ids
    assert id(net.channel_adapter.proj.weight) in {id(p) for p in groups[1]["params"]}
    n = sum(p.numel() for g in groups for p in g["params"])
    assert n == count_parameters(net)["total"][0]
    opt = torch.optim.AdamW(groups)
    assert [g["name"] for g in opt.param_groups] == ["image_encoder", "decoder"]


def test_param_groups_only_trainable_and_new_params_at_full_lr(base):
    net = apply_finetune(base, "adapter")
    groups = param_groups(net, lr=1e-3, encoder_lr_mult=0.1)
    # Adapters sit inside the encoder but start from scratch: they use the full learning rate.
    assert [g["name"] for g in groups] == ["decoder"]
    assert all(p.requires_grad for p in groups[0]["params"])
    assert groups[0]["lr"] == 1e-3


def test_param_groups_error_without_trainable_parameters(base):
    base.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(base, lr=1e-3)


def test_encoder_lr_mult_defaults_to_the_network_config(base):
    net = apply_finetune(base, {"strategy": "full", "encoder_lr_mult": 0.25})
    groups = param_groups(net, lr=1e-3)
    assert groups[0]["name"] == "image_encoder" and groups[0]["lr"] == pytest.approx(2.5e-4)
    assert param_groups(net, 1e-3, 1.0)[0]["lr"] == 1e-3  # an explicit multiplier wins
