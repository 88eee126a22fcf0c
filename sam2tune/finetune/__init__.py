"""Fine-tuning strategies for SAM2: config, freezing, LoRA (peft), adapters, prompt tokens, adapter IO and bank."""

from sam2tune.finetune.bank import AdapterBank
from sam2tune.finetune.config import (
    COMPONENTS,
    DEFAULT_LORA_TARGETS,
    PARAMETER_EFFICIENT,
    STRATEGIES,
    STRATEGY_DEFAULTS,
    FinetuneConfig,
    as_config,
)
from sam2tune.finetune.freeze import apply_freezing, component_of, is_trainable, trainable_tensors
from sam2tune.finetune.io import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    adapter_state_dict,
    load_adapter,
    merged_state_dict,
    read_adapter,
    save_adapter,
    save_merged,
)
from sam2tune.finetune.lora import inject_lora, lora_config, lora_layers, lora_module_names, merged_lora_state_dict
from sam2tune.finetune.params import count_parameters, format_parameter_table, param_groups
from sam2tune.finetune.strategies import apply_finetune

__all__ = [
    "COMPONENTS",
    "CONFIG_NAME",
    "DEFAULT_LORA_TARGETS",
    "PARAMETER_EFFICIENT",
    "STRATEGIES",
    "STRATEGY_DEFAULTS",
    "WEIGHTS_NAME",
    "AdapterBank",
    "FinetuneConfig",
    "adapter_state_dict",
    "apply_finetune",
    "apply_freezing",
    "as_config",
    "component_of",
    "count_parameters",
    "format_parameter_table",
    "inject_lora",
    "is_trainable",
    "load_adapter",
    "lora_config",
    "lora_layers",
    "lora_module_names",
    "merged_lora_state_dict",
    "merged_state_dict",
    "param_groups",
    "read_adapter",
    "save_adapter",
    "save_merged",
    "trainable_tensors",
]
