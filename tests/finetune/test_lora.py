"""LoRA through peft: exactly the intended Linear layers are wrapped, names, counts, merging on private copies."""

import re

import pytest
import torch
from torch import nn

from sam2tune.finetune import DEFAULT_LORA_TARGETS, FinetuneConfig, inject_lora, lora_layers, lora_module_names
from sam2tune.finetune.lora import has_lora, merged_lora_state_dict


def expected_targets(network: nn.Module) -> set[str]:
    """Hiera attention qkv/proj + mask-decoder transformer q/k/v/out projections, found from the module tree."""
    hiera = {
        f"sam.image_encoder.trunk.blocks.{i}.attn.{leaf}"
        for i, _ in enumerate(network.sam.image_encoder.trunk.blocks)
        for leaf in ("qkv", "proj")
    }
    decoder = {
        f"sam.sam_mask_decoder.transformer.{n}"
        for n, m in network.sam.sam_mask_decoder.transformer.named_modules()
        if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in ("q_proj", "k_proj", "v_proj", "out_proj")
    }
    return hiera | decoder


def test_default_targets_wrap_exactly_the_attention_linears(base):
    expected = expected_targets(base)
    assert len(expected) == 52  # tiny: 12 blocks x 2 + (2 layers x 3 attentions + final) x 4
    wrapped = inject_lora(base, FinetuneConfig(strategy="lora"))
    assert set(wrapped) == expected
    assert set(lora_module_names(base)) == expected
    # Not wrapped: Hiera's width-changing block proj, MLPs, memory attention, hypernetwork / IoU heads.
    assert not any(
        re.search(r"blocks\.\d+\.proj$|mlp|memory_attention|iou_prediction|hypernetworks", n) for n in wrapped
    )
    assert all(isinstance(m.get_base_layer(), nn.Linear) for m in lora_layers(base).values())


def test_regex_matches_names_with_and_without_the_sam_prefix():
    rx = re.compile(DEFAULT_LORA_TARGETS)
    assert rx.fullmatch("image_encoder.trunk.blocks.0.attn.qkv")
    assert rx.fullmatch("sam.sam_mask_decoder.transformer.final_attn_token_to_image.out_proj")
    assert not rx.fullmatch("sam.image_encoder.trunk.blocks.1.proj")
    assert not rx.fullmatch("sam.memory_attention.layers.0.self_attn.q_proj")


def test_parameter_names_and_count(base):
    inject_lora(base, FinetuneConfig(strategy="lora", lora_r=4))
    names = [n for n, _ in base.named_parameters() if ".lora_" in n]
    assert "sam.image_encoder.trunk.blocks.0.attn.qkv.lora_A.default.weight" in names
    assert "sam.image_encoder.trunk.blocks.0.attn.qkv.base_layer.weight" in dict(base.named_parameters())
    expected = sum(
        4 * (m.in_features + m.out_features) for m in (layer.get_base_layer() for layer in lora_layers(base).values())
    )
    assert sum(p.numel() for n, p in base.named_parameters() if ".lora_" in n) == expected


def test_list_targets_and_no_match_error(base):
    wrapped = inject_lora(base, FinetuneConfig(strategy="lora", lora_target_modules=["qkv"]))
    assert len(wrapped) == 12
    with pytest.raises(ValueError, match="lora_target_modules"):
        inject_lora(base, FinetuneConfig(strategy="lora", lora_target_modules=r"no\.such\.layer"), adapter_name="x")


def test_merged_state_dict_has_plain_keys_and_leaves_layers_unmerged(base, tiny_base):
    assert not has_lora(base)
    inject_lora(base, FinetuneConfig(strategy="lora"))
    with torch.no_grad():
        for layer in lora_layers(base).values():
            layer.lora_B["default"].weight.normal_(std=0.1)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    merged = merged_lora_state_dict(base)
    assert set(merged) == set(tiny_base.state_dict())
    assert all(torch.equal(v, before[k]) for k, v in base.state_dict().items())
    assert not any(layer.merged for layer in lora_layers(base).values())
    key = "sam.image_encoder.trunk.blocks.0.attn.qkv"
    layer = lora_layers(base)[key]
    delta = layer.get_delta_weight("default")
    assert delta.abs().max() > 0
    torch.testing.assert_close(merged[f"{key}.weight"], before[f"{key}.base_layer.weight"] + delta)
