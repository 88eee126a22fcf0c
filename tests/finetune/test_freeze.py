"""Freezing by name: every SAM2Segmenter parameter maps to a component; the config decides which ones train."""

import pytest
import torch

from sam2tune.finetune import FinetuneConfig, apply_freezing, component_of, is_trainable
from sam2tune.networks import ChannelAdapter


@pytest.mark.parametrize(
    "name, component",
    [
        ("sam.image_encoder.trunk.blocks.3.attn.qkv.weight", "image_encoder"),
        ("sam.image_encoder.neck.convs.0.conv.weight", "image_encoder"),
        ("sam.sam_prompt_encoder.point_embeddings.2.weight", "prompt_encoder"),
        ("sam.sam_mask_decoder.iou_prediction_head.layers.0.weight", "mask_decoder"),
        ("sam.memory_attention.layers.0.linear1.weight", "memory"),
        ("sam.obj_ptr_proj.layers.0.weight", "memory"),
        ("sam.no_mem_embed", "memory"),
        ("prompt_tokens", "prompt_tokens"),
        ("channel_adapter.proj.weight", "channel_adapter"),
        ("sam.image_encoder.trunk.blocks.0.attn.qkv.lora_A.default.weight", "lora"),
        ("sam.sam_mask_decoder.transformer.layers.0.self_attn.q_proj.lora_B.x.weight", "lora"),
        ("sam.image_encoder.trunk.blocks.0.attn.qkv.base_layer.weight", "image_encoder"),
        ("sam.image_encoder.trunk.blocks.5.adapter.up.weight", "adapter"),
        ("something_else", "other"),
    ],
)
def test_component_of(name, component):
    assert component_of(name) == component


def test_every_base_parameter_has_a_component_matching_the_sam2_children(tiny_base):
    sizes: dict[str, int] = {}
    for name, p in tiny_base.named_parameters():
        c = component_of(name)
        assert c != "other", name
        sizes[c] = sizes.get(c, 0) + p.numel()
    sam = tiny_base.sam
    assert sizes["image_encoder"] == sum(p.numel() for p in sam.image_encoder.parameters())
    assert sizes["mask_decoder"] == sum(p.numel() for p in sam.sam_mask_decoder.parameters())
    assert sizes["prompt_encoder"] == sum(p.numel() for p in sam.sam_prompt_encoder.parameters())
    assert sum(sizes.values()) == sum(p.numel() for p in tiny_base.parameters())


def test_lora_base_weights_stay_frozen_and_bias_modes():
    base_w = "sam.image_encoder.trunk.blocks.0.attn.qkv.base_layer.weight"
    base_b = "sam.image_encoder.trunk.blocks.0.attn.qkv.base_layer.bias"
    other_b = "sam.sam_mask_decoder.iou_prediction_head.layers.0.bias"
    lora = FinetuneConfig(strategy="lora")
    assert not is_trainable(base_w, lora) and not is_trainable(base_b, lora) and not is_trainable(other_b, lora)
    only = FinetuneConfig(strategy="lora", lora_bias="lora_only")
    assert is_trainable(base_b, only) and not is_trainable(other_b, only) and not is_trainable(base_w, only)
    every = FinetuneConfig(strategy="lora", lora_bias="all")
    assert is_trainable(base_b, every) and is_trainable(other_b, every) and not is_trainable(base_w, every)
    # train_mask_decoder under lora trains the decoder's own weights but never the LoRA-wrapped ones.
    dec = FinetuneConfig(strategy="lora", train_mask_decoder=True)
    assert is_trainable("sam.sam_mask_decoder.iou_prediction_head.layers.0.weight", dec)
    assert not is_trainable("sam.sam_mask_decoder.transformer.layers.0.self_attn.q_proj.base_layer.weight", dec)


@pytest.mark.parametrize("strategy", ["full", "decoder_only", "lora", "adapter", "prompt"])
def test_channel_adapter_trains_in_every_strategy(strategy):
    assert is_trainable("channel_adapter.proj.weight", FinetuneConfig(strategy=strategy))


def test_apply_freezing_sets_requires_grad(base):
    base.channel_adapter = ChannelAdapter(5)
    names = apply_freezing(base, FinetuneConfig(strategy="decoder_only", train_prompt_encoder=True))
    trainable = {n for n, p in base.named_parameters() if p.requires_grad}
    assert set(names) == trainable
    assert {component_of(n) for n in trainable} == {"mask_decoder", "prompt_encoder", "channel_adapter"}
    assert all(p.requires_grad for p in base.sam.sam_mask_decoder.parameters())
    assert not any(p.requires_grad for p in base.sam.image_encoder.parameters())
    assert (
        isinstance(base.channel_adapter.proj.weight, torch.nn.Parameter)
        and base.channel_adapter.proj.weight.requires_grad
    )
