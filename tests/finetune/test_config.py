"""FinetuneConfig: defaults, help text, validation messages, dict / bundle construction, resolved components."""

import dataclasses
import json

import pytest

from sam2tune.finetune import COMPONENTS, DEFAULT_LORA_TARGETS, STRATEGIES, FinetuneConfig, as_config


def test_defaults_and_help_text():
    c = FinetuneConfig()
    assert (c.strategy, c.lora_r, c.lora_alpha, c.lora_dropout, c.lora_bias) == ("full", 8, 16, 0.05, "none")
    assert (c.adapter_dim, c.num_prompt_tokens, c.encoder_lr_mult, c.activation_checkpointing) == (32, 1, 1.0, False)
    assert c.lora_target_modules == DEFAULT_LORA_TARGETS
    for f in dataclasses.fields(FinetuneConfig):
        assert f.metadata.get("help"), f"field {f.name} has no help text"


def test_unknown_strategy_message():
    with pytest.raises(ValueError) as e:
        FinetuneConfig(strategy="xyz")
    assert str(e.value) == (
        "Unknown finetune 'xyz': choose one of full, decoder_only, lora, adapter, prompt (config key: finetune)"
    )


def test_strategy_spelling_is_normalised():
    assert FinetuneConfig(strategy=" Decoder-Only ").strategy == "decoder_only"


@pytest.mark.parametrize(
    "field, value",
    [
        ("lora_r", 0),
        ("lora_r", 2.5),
        ("lora_r", True),
        ("lora_alpha", 0),
        ("lora_dropout", 1.0),
        ("lora_dropout", -0.1),
        ("lora_bias", "some"),
        ("lora_target_modules", "(unclosed"),
        ("lora_target_modules", []),
        ("lora_target_modules", 3),
        ("adapter_dim", 0),
        ("encoder_lr_mult", -1.0),
        ("activation_checkpointing", "yes"),
        ("train_image_encoder", "true"),
        ("train_memory", 1),
    ],
)
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        FinetuneConfig(**{field: value})


def test_prompt_strategy_needs_a_token():
    with pytest.raises(ValueError, match="num_prompt_tokens"):
        FinetuneConfig(strategy="prompt", num_prompt_tokens=0)
    assert FinetuneConfig(strategy="lora", num_prompt_tokens=0).num_prompt_tokens == 0


def test_from_dict_bundle_style_and_round_trip():
    c = FinetuneConfig.from_dict({"strategy": "lora", "lora_r": 4, "lora_target_modules": ["qkv"]})
    assert (c.strategy, c.lora_r, c.lora_target_modules) == ("lora", 4, ["qkv"])
    again = FinetuneConfig.from_dict(json.loads(json.dumps(c.to_dict())))
    assert again == c
    with pytest.raises(ValueError, match="lora_rank"):
        FinetuneConfig.from_dict({"strategy": "lora", "lora_rank": 4})


def test_as_config_accepts_name_dict_config():
    assert as_config("adapter").strategy == "adapter"
    assert as_config({"strategy": "prompt", "num_prompt_tokens": 2}).num_prompt_tokens == 2
    c = FinetuneConfig(strategy="lora")
    assert as_config(c) is c
    assert as_config(None).strategy == "full"
    with pytest.raises(TypeError):
        as_config(3)
    with pytest.raises(ValueError, match="Unknown finetune 'xyz'"):
        as_config("xyz")


@pytest.mark.parametrize(
    "strategy, trained",
    [
        ("full", set(COMPONENTS)),
        ("decoder_only", {"mask_decoder", "prompt_tokens", "channel_adapter"}),
        ("lora", {"lora", "prompt_tokens", "channel_adapter"}),
        ("adapter", {"adapter", "prompt_tokens", "channel_adapter"}),
        ("prompt", {"prompt_tokens", "channel_adapter"}),
    ],
)
def test_strategy_defaults(strategy, trained):
    table = FinetuneConfig(strategy=strategy).trainable_components()
    assert set(table) == set(COMPONENTS)
    assert {k for k, v in table.items() if v} == trained


def test_flags_override_defaults():
    table = FinetuneConfig(
        strategy="decoder_only", train_prompt_encoder=True, train_mask_decoder=False
    ).trainable_components()
    assert table["prompt_encoder"] and not table["mask_decoder"]
    assert FinetuneConfig(strategy="full", train_image_encoder=False).trainable_components()["image_encoder"] is False
    assert FinetuneConfig(strategy="lora", train_memory=True).trainable_components()["memory"] is True
    assert set(STRATEGIES) == {"full", "decoder_only", "lora", "adapter", "prompt"}
