"""LoRA through peft: inject into a SAM2Segmenter in place, read/write adapter weights, merge on private copies."""

from __future__ import annotations

import copy
import re
import sys
import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn

from sam2tune.finetune.config import FinetuneConfig

if TYPE_CHECKING:
    from peft import LoraConfig
    from peft.tuners.lora import LoraLayer

# peft is imported on first LoRA use only: it pulls in transformers (seconds of start-up) that the other
# strategies, inference and MONAI Label never need.

DEFAULT_ADAPTER = "default"
# A LoRA layer's own keys: `<layer>.base_layer.<p>` (the wrapped weights) or `<layer>.lora_X.<adapter>.<p>`.
_LORA_KEY = re.compile(r"^(?P<layer>.+?)\.(?P<part>base_layer|lora_[A-Za-z_]+)\.(?P<rest>.+)$")


def lora_config(config: FinetuneConfig) -> LoraConfig:
    """Build peft's LoraConfig from the LoRA fields of a FinetuneConfig (imports peft).

    Args:
        config: the fine-tuning config (lora_r, lora_alpha, lora_dropout, lora_target_modules, lora_bias).

    Returns:
        The ``peft.LoraConfig``.
    """
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
        bias=config.lora_bias,
    )


def inject_lora(network: nn.Module, config: FinetuneConfig, adapter_name: str = DEFAULT_ADAPTER) -> list[str]:
    """Wrap the target Linear layers of `network` in peft LoRA layers, in place; return the wrapped module names.

    The module stays the same object (a SAM2Segmenter), so `network(image, boxes=...)` and MONAI engines work
    unchanged. A second call with another `adapter_name` adds that adapter beside the first (peft multi-adapter).
    The new LoRA layers follow the train / eval mode of the layers they wrap.

    Args:
        network: the module to wrap in place (a SAM2Segmenter).
        config: the fine-tuning config (its LoRA fields).
        adapter_name: the peft adapter name.

    Returns:
        The names of the modules now holding `adapter_name`.

    Raises:
        ValueError: when the network already has an adapter of that name, or the target modules match no layer.
    """
    from peft.functional import inject_adapter_in_model

    if adapter_name in getattr(network, "peft_config", {}):
        raise ValueError(f"The network already has a LoRA adapter named {adapter_name!r}.")
    try:
        with warnings.catch_warnings():
            # A second adapter is deliberate here (AdapterBank); peft extends `network.peft_config` and warns.
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            inject_adapter_in_model(lora_config(config), network, adapter_name=adapter_name)
    except ValueError as e:
        getattr(network, "peft_config", {}).pop(adapter_name, None)  # leave no config for an adapter that failed
        raise ValueError(
            f"LoRA target modules matched no layer of {type(network).__name__} (lora_target_modules="
            f"{config.lora_target_modules!r}): {e}"
        ) from e
    for layer in lora_layers(network).values():
        # peft builds LoRA dropout in training mode: follow the wrapped layer, so an eval-mode network stays in eval.
        layer.train(layer.get_base_layer().training)
    return lora_module_names(network, adapter_name)


def lora_layers(network: nn.Module) -> dict[str, LoraLayer]:
    """Find the LoRA-wrapped modules of `network` (without importing peft when it is not loaded yet).

    Args:
        network: any module.

    Returns:
        module name -> peft ``LoraLayer``; empty when peft was never imported.
    """
    if "peft" not in sys.modules:  # no peft imported: no LoRA layer can exist
        return {}
    from peft.tuners.lora import LoraLayer

    return {n: m for n, m in network.named_modules() if isinstance(m, LoraLayer)}


def lora_module_names(network: nn.Module, adapter_name: str | None = None) -> list[str]:
    """List the modules wrapped by LoRA.

    Args:
        network: any module.
        adapter_name: only modules holding this adapter; None = any adapter.

    Returns:
        The module names.
    """
    return [n for n, m in lora_layers(network).items() if adapter_name is None or adapter_name in m.lora_A]


def has_lora(network: nn.Module) -> bool:
    """Tell whether `network` holds at least one peft LoRA layer.

    Args:
        network: any module.

    Returns:
        True when some module is a LoRA layer.
    """
    return bool(lora_layers(network))


def lora_state_dict(network: nn.Module, adapter_name: str = DEFAULT_ADAPTER) -> dict[str, torch.Tensor]:
    """Get one adapter's LoRA weights in peft's portable form.

    Args:
        network: a LoRA-wrapped module.
        adapter_name: the peft adapter.

    Returns:
        peft's adapter state_dict (adapter name removed: ``...qkv.lora_A.weight``), plus LoRA biases if any.
    """
    from peft.functional import get_peft_model_state_dict

    return get_peft_model_state_dict(network, adapter_name=adapter_name)


def load_lora_state_dict(
    network: nn.Module, state_dict: dict[str, torch.Tensor], adapter_name: str = DEFAULT_ADAPTER
) -> list[str]:
    """Load a portable state_dict through peft (re-inserting `adapter_name`); return unexpected keys.

    Keys that are not LoRA keys (e.g. prompt tokens saved beside the LoRA weights) pass through to the network.

    Args:
        network: a module with LoRA layers holding `adapter_name`.
        state_dict: portable keys (``lora_state_dict`` form) -> tensors.
        adapter_name: the peft adapter slot to fill.

    Returns:
        The keys the network did not take (unexpected keys).
    """
    from peft.functional import set_peft_model_state_dict

    result = set_peft_model_state_dict(network, state_dict, adapter_name=adapter_name)
    return list(result.unexpected_keys)


def merged_lora_state_dict(network: nn.Module) -> dict[str, torch.Tensor]:
    """Build ``network.state_dict()`` with every LoRA layer merged by peft into plain `<layer>.weight` / `.bias` keys.

    The live network is not touched: each LoRA layer is deep-copied (only that layer, so memory stays at the
    size of one Linear) and peft's own `merge(safe_merge=True)` runs on the copy. Unmerged tensors share storage
    with the live network: do not modify them in place.

    Args:
        network: a LoRA-wrapped module.

    Returns:
        The merged state_dict (no ``base_layer`` / ``lora_*`` keys for the merged layers).
    """
    layers = lora_layers(network)
    merged: dict[str, dict[str, torch.Tensor]] = {}
    for name, layer in layers.items():
        private = copy.deepcopy(layer)
        private.merge(safe_merge=True)  # no-op (peft warns) if the live layer is already merged
        merged[name] = {k: v.detach() for k, v in private.get_base_layer().state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in network.state_dict().items():
        m = _LORA_KEY.match(key)
        if m is None or m["layer"] not in merged:
            out[key] = value
        elif m["part"] == "base_layer":
            out[f"{m['layer']}.{m['rest']}"] = merged[m["layer"]][m["rest"]]
        # lora_A / lora_B / ... keys are folded into the merged weight above and dropped.
    return out
