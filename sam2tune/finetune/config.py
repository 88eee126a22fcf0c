"""FinetuneConfig: which parts of SAM2 train, and how (peft-style dataclass, validated on construction)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

STRATEGIES = ("full", "decoder_only", "lora", "adapter", "prompt")
# Strategies whose trained weights are a small adapter folder (save_adapter) beside the merged model.
PARAMETER_EFFICIENT = ("lora", "adapter", "prompt")
# Pretrained SAM2 parts a per-component flag can switch, and the parts a strategy adds or keeps.
BASE_COMPONENTS = ("image_encoder", "prompt_encoder", "mask_decoder", "memory")
COMPONENTS = BASE_COMPONENTS + ("prompt_tokens", "channel_adapter", "lora", "adapter")
LORA_BIAS = ("none", "all", "lora_only")

# Hiera attention (qkv + output proj of every block; not the block-level `proj` that changes width) and every
# attention projection of the two-way transformer in the mask decoder. peft full-matches the module name.
DEFAULT_LORA_TARGETS = (
    r"(?:sam\.)?(?:image_encoder\.trunk\.blocks\.\d+\.attn\.(?:qkv|proj)"
    r"|sam_mask_decoder\.transformer\.(?:layers\.\d+\.)?\w+\.(?:q_proj|k_proj|v_proj|out_proj))"
)

# component -> trainable, per strategy, before the train_* flags override the four pretrained parts.
# The channel adapter (N-channel 1x1 conv) is new, so it trains everywhere; prompt tokens train wherever present.
STRATEGY_DEFAULTS: dict[str, dict[str, bool]] = {
    "full": dict.fromkeys(COMPONENTS, True),
    "decoder_only": dict.fromkeys(COMPONENTS, False)
    | {"mask_decoder": True, "prompt_tokens": True, "channel_adapter": True},
    "lora": dict.fromkeys(COMPONENTS, False) | {"lora": True, "prompt_tokens": True, "channel_adapter": True},
    "adapter": dict.fromkeys(COMPONENTS, False) | {"adapter": True, "prompt_tokens": True, "channel_adapter": True},
    "prompt": dict.fromkeys(COMPONENTS, False) | {"prompt_tokens": True, "channel_adapter": True},
}


def _unknown_strategy(value: Any) -> ValueError:
    return ValueError(f"Unknown finetune {value!r}: choose one of {', '.join(STRATEGIES)} (config key: finetune)")


@dataclass
class FinetuneConfig:
    """How to fine-tune a SAM2Segmenter: strategy, per-component trainable flags, LoRA / adapter / prompt settings.

    Validated on construction; each field's ``metadata["help"]`` is the text the bundles' docs show.

    Args:
        strategy: full | decoder_only | lora | adapter | prompt (case and "-" / "_" insensitive).
        train_image_encoder: train the Hiera image encoder + neck; None = the strategy's default.
        train_prompt_encoder: train the prompt encoder; None = the strategy's default.
        train_mask_decoder: train the mask decoder (with lora: its non-LoRA weights too); None = the default.
        train_memory: train the 3D memory parts (memory attention / encoder, object-pointer projections, no-memory
            and no-object embeddings); None = the strategy's default.
        lora_r: LoRA rank (>= 1).
        lora_alpha: LoRA scaling numerator (> 0; scale = lora_alpha / lora_r).
        lora_dropout: dropout on the LoRA branch input, in [0, 1).
        lora_target_modules: a regex peft full-matches against module names, or a non-empty list of name suffixes.
        lora_bias: which biases train with LoRA: none | all | lora_only.
        adapter_dim: bottleneck width of the adapters after each Hiera block (>= 1).
        num_prompt_tokens: learned prompt tokens of the prompt strategy (>= 1 there, >= 0 otherwise).
        encoder_lr_mult: learning-rate multiplier of the pretrained image-encoder parameter group (>= 0).
        activation_checkpointing: recompute Hiera block activations in backward (less memory).

    Raises:
        ValueError: for an unknown strategy or lora_bias, a train_* flag that is not a bool or None, a number out of
            its range, or an invalid lora_target_modules regex / list.
    """

    strategy: str = field(
        default="full",
        metadata={"help": f"Fine-tuning strategy, one of {', '.join(STRATEGIES)} (bundle key: finetune)."},
    )
    train_image_encoder: bool | None = field(
        default=None, metadata={"help": "Train the Hiera image encoder + neck. None = the strategy's default."}
    )
    train_prompt_encoder: bool | None = field(
        default=None, metadata={"help": "Train the prompt encoder. None = the strategy's default."}
    )
    train_mask_decoder: bool | None = field(
        default=None,
        metadata={
            "help": "Train the mask decoder (with lora: its non-LoRA weights too). None = the strategy's default."
        },
    )
    train_memory: bool | None = field(
        default=None,
        metadata={
            "help": "Train the 3D memory parts (memory_attention, memory_encoder, obj_ptr_proj, no-memory / "
            "no-object embeddings). None = the strategy's default."
        },
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: float = field(default=16, metadata={"help": "LoRA scaling numerator (scale = lora_alpha / lora_r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA branch input, in [0, 1)."})
    lora_target_modules: str | list[str] = field(
        default=DEFAULT_LORA_TARGETS,
        metadata={
            "help": "Modules LoRA wraps: a regex peft full-matches against module names, or a list of name suffixes. "
            "Default: Hiera attention qkv/proj + mask-decoder attention q/k/v/out projections."
        },
    )
    lora_bias: str = field(default="none", metadata={"help": f"Which biases train with LoRA: {', '.join(LORA_BIAS)}."})
    adapter_dim: int = field(default=32, metadata={"help": "Bottleneck width of the adapters after each Hiera block."})
    num_prompt_tokens: int = field(
        default=1, metadata={"help": "Learned prompt tokens for the prompt strategy (added if the network has none)."}
    )
    encoder_lr_mult: float = field(
        default=1.0, metadata={"help": "Learning-rate multiplier of the pretrained image-encoder parameter group."}
    )
    activation_checkpointing: bool = field(
        default=False,
        metadata={"help": "Recompute Hiera block activations in backward (less memory, ~1 extra encoder forward)."},
    )

    def __post_init__(self) -> None:
        if isinstance(self.strategy, str):
            self.strategy = self.strategy.strip().lower().replace("-", "_")
        if self.strategy not in STRATEGIES:
            raise _unknown_strategy(self.strategy)
        for name in ("train_image_encoder", "train_prompt_encoder", "train_mask_decoder", "train_memory"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"{name} must be true, false or null (the strategy's default), got {getattr(self, name)!r}."
                )
        _check_int("lora_r", self.lora_r, 1)
        _check_number("lora_alpha", self.lora_alpha, low=0.0, low_inclusive=False)
        _check_number("lora_dropout", self.lora_dropout, low=0.0, high=1.0)
        self.lora_target_modules = _check_targets(self.lora_target_modules)
        if self.lora_bias not in LORA_BIAS:
            raise ValueError(f"lora_bias must be one of {', '.join(LORA_BIAS)}, got {self.lora_bias!r}.")
        _check_int("adapter_dim", self.adapter_dim, 1)
        _check_int("num_prompt_tokens", self.num_prompt_tokens, 1 if self.strategy == "prompt" else 0)
        _check_number("encoder_lr_mult", self.encoder_lr_mult, low=0.0)
        if not isinstance(self.activation_checkpointing, bool):
            raise ValueError(f"activation_checkpointing must be true or false, got {self.activation_checkpointing!r}.")

    # ---- construction --------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        """Build a config from a plain dict (bundle JSON).

        Args:
            data: field name -> value.

        Returns:
            The validated config.

        Raises:
            ValueError: for unknown keys (the message lists the allowed ones) or invalid values.
        """
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ValueError(f"Unknown finetune config keys {unknown}: allowed keys are {', '.join(allowed)}.")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Convert to a plain dict (the inverse of ``from_dict``).

        Returns:
            field name -> value, JSON-serialisable.
        """
        return asdict(self)

    # ---- resolved behaviour --------------------------------------------------------------------------------------
    def trainable_components(self) -> dict[str, bool]:
        """Resolve which components train: the strategy's defaults with the train_* flags applied.

        Returns:
            component (``COMPONENTS``) -> trainable.
        """
        table = dict(STRATEGY_DEFAULTS[self.strategy])
        for component in BASE_COMPONENTS:
            flag = getattr(self, f"train_{component}")
            if flag is not None:
                table[component] = flag
        return table


def as_config(config: FinetuneConfig | dict[str, Any] | str | None) -> FinetuneConfig:
    """Coerce a FinetuneConfig, a dict (bundle JSON) or a bare strategy name into a FinetuneConfig.

    Args:
        config: a FinetuneConfig (returned as is), a dict of its fields, a strategy name, or None (the defaults).

    Returns:
        The FinetuneConfig.

    Raises:
        ValueError: for unknown keys or invalid values.
        TypeError: for any other type.
    """
    if isinstance(config, FinetuneConfig):
        return config
    if config is None:
        return FinetuneConfig()
    if isinstance(config, str):
        return FinetuneConfig(strategy=config)
    if isinstance(config, dict):
        return FinetuneConfig.from_dict(config)
    raise TypeError(
        f"finetune config must be a FinetuneConfig, a dict or a strategy name, got {type(config).__name__}."
    )


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")


def _check_number(name: str, value: Any, low: float, high: float | None = None, low_inclusive: bool = True) -> None:
    ok = not isinstance(value, bool) and isinstance(value, int | float)
    ok = ok and (value >= low if low_inclusive else value > low) and (high is None or value < high)
    if not ok:
        bounds = f"{'>=' if low_inclusive else '>'} {low}" + (f" and < {high}" if high is not None else "")
        raise ValueError(f"{name} must be a number {bounds}, got {value!r}.")


def _check_targets(value: Any) -> str | list[str]:
    if isinstance(value, str):
        try:
            re.compile(value)
        except re.error as e:
            raise ValueError(f"lora_target_modules is not a valid regular expression ({e}): {value!r}.") from e
        return value
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) and v for v in value):
        return list(value)
    raise ValueError(f"lora_target_modules must be a regex string or a non-empty list of module names, got {value!r}.")
