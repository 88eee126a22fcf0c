"""AdapterBank: one frozen base SAM2Segmenter, several named domain adapters, switched without reloading the base."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from sam2tune.finetune.config import FinetuneConfig
from sam2tune.finetune.io import check_adapter_fits, read_adapter
from sam2tune.finetune.lora import inject_lora, load_lora_state_dict, lora_layers
from sam2tune.networks.adapters import adapter_bottleneck_in, add_hiera_adapters
from sam2tune.networks.segmenter import SAM2Segmenter


@dataclass
class _Entry:
    config: FinetuneConfig
    directory: str
    # Non-LoRA weights (prompt tokens, bottleneck adapters, channel adapter, decoder for decoder_only) as frozen
    # Parameters, swapped into the base by reference: switching copies nothing and never writes a base tensor.
    params: dict[str, nn.Parameter] = field(default_factory=dict)


class AdapterBank:
    """Several adapters (from save_adapter directories) over one shared frozen base.

    LoRA adapters live side by side inside the base's peft LoRA layers (peft multi-adapter, switched with
    `set_adapter`); all other adapter weights are kept as Parameters and put in place of the base's on `use`.
    Build the base on its final device first: weights are loaded onto the base's device.

    Args:
        base: a plain SAM2Segmenter (not prepared by ``apply_finetune``); it is set to eval mode and frozen.

    Raises:
        ValueError: when `base` already has a ``finetune_config``.

    Example:
        bank = AdapterBank(SAM2Segmenter("tiny", 1024, pretrained_checkpoint=ckpt))
        bank.add("refuge", "runs/refuge/models/adapter"); bank.add("drishti", "runs/drishti/models/adapter")
        logits = bank.use("refuge")(image, boxes=boxes)
    """

    def __init__(self, base: SAM2Segmenter) -> None:
        if getattr(base, "finetune_config", None) is not None:
            raise ValueError(
                "AdapterBank needs a plain base SAM2Segmenter, not one already prepared by apply_finetune."
            )
        self.base = base.eval()
        self.base.requires_grad_(False)
        self._entries: dict[str, _Entry] = {}
        # name -> the base's own Parameter (or None where the base has none, e.g. prompt_tokens) for every
        # parameter some adapter replaces: what an adapter without that key runs with.
        self._defaults: dict[str, nn.Parameter | None] = {}
        self.active: str | None = None

    # ---- registry --------------------------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Names of the loaded adapters, in the order they were added."""
        return list(self._entries)

    def add(self, name: str, directory: str) -> AdapterBank:
        """Load the adapter saved in `directory` under `name`; the first one added becomes active.

        The base's own weights are never rewritten: LoRA weights go into a new peft adapter slot, the other weights
        are kept aside and swapped in by ``use``. Everything is checked before the base is touched.

        Args:
            name: a Python identifier (peft uses it as a module key), not yet in the bank.
            directory: a ``save_adapter`` directory (adapter_config.json + adapter_model.safetensors) of the same
                variant and input channels as the base.

        Returns:
            The bank itself (calls chain), with the previously active adapter still active.

        Raises:
            ValueError: for a bad or duplicate name, a LoRA file of a non-LoRA strategy, another bottleneck width
                than the bank's, a weight that does not fit the base, or an adapter of another variant / in_channels.
            FileNotFoundError: when `directory` or one of its files is missing.
        """
        if not name or not name.isidentifier():
            raise ValueError(f"Adapter name must be a Python identifier (peft uses it as a module key), got {name!r}.")
        if name in self._entries:
            raise ValueError(f"Adapter {name!r} is already in the bank (names: {', '.join(self.names)}).")
        meta, tensors = read_adapter(directory, device=next(self.base.parameters()).device)
        config = check_adapter_fits(self.base, meta, directory)
        lora = {k: v for k, v in tensors.items() if ".lora_" in k}
        rest = {k: v for k, v in tensors.items() if k not in lora}
        if lora and config.strategy != "lora":
            raise ValueError(f"Adapter {directory} is finetune '{config.strategy}' but holds LoRA weights.")
        dim = adapter_bottleneck_in(rest)
        have = adapter_bottleneck_in(self.base.state_dict())
        if dim and have and dim != have:
            raise ValueError(f"Adapter {directory} has bottleneck width {dim}, other adapters in the bank use {have}.")
        # Check every swappable weight before touching the base, so a bad directory leaves the bank as it was.
        own = dict(self.base.named_parameters())
        for key, value in rest.items():
            if key == "prompt_tokens" or ".base_layer." in key or (dim and ".adapter." in key and not have):
                continue  # swapped whole (tokens), or created below (LoRA-wrapped biases, adapters): checked then
            if key not in own or own[key].shape != value.shape:
                found = tuple(own[key].shape) if key in own else "no such parameter"
                raise ValueError(f"Adapter {directory}: {key} {tuple(value.shape)} does not fit the base ({found}).")

        if dim and not have:
            # Fresh adapters start as the identity (zero up-projection): entries without adapters run unchanged.
            add_hiera_adapters(self.base.sam.image_encoder.trunk, dim)
        if lora:
            inject_lora(self.base, config, adapter_name=name)
            unexpected = load_lora_state_dict(self.base, lora, adapter_name=name)
            if unexpected:
                raise ValueError(f"Adapter {directory} holds LoRA keys the base lacks: {unexpected[:5]}.")
        own = dict(self.base.named_parameters())
        entry = _Entry(config, directory)
        for key, value in rest.items():
            if key != "prompt_tokens" and (key not in own or own[key].shape != value.shape):
                raise ValueError(f"Adapter {directory}: {key} {tuple(value.shape)} does not fit the base.")
            self._defaults.setdefault(key, own.get(key))
            entry.params[key] = nn.Parameter(value, requires_grad=False)
        self._entries[name] = entry
        # peft marks freshly injected adapters trainable, and builds their dropout in training mode.
        self.base.requires_grad_(False)
        self.base.eval()
        return self.use(self.active or name)

    def memory_bytes(self) -> dict[str, int]:
        """Count the bytes each adapter holds beside the shared base.

        Returns:
            name -> bytes of that adapter's own tensors (LoRA matrices + swapped weights).
        """
        sizes = {}
        for name, entry in self._entries.items():
            total = sum(p.numel() * p.element_size() for p in entry.params.values())
            for layer in lora_layers(self.base).values():
                for module_dict in (layer.lora_A, layer.lora_B):
                    if name in module_dict:
                        total += sum(p.numel() * p.element_size() for p in module_dict[name].parameters())
            sizes[name] = total
        return sizes

    # ---- switching and running -------------------------------------------------------------------------------------
    def use(self, name: str) -> AdapterBank:
        """Make `name` the active adapter: O(adapter size), the base's own weights are never rewritten.

        Args:
            name: an adapter added with ``add``.

        Returns:
            The bank itself, so ``bank.use(name)(image, boxes=...)`` runs that adapter.

        Raises:
            KeyError: when no adapter of that name is in the bank.
        """
        if name not in self._entries:
            raise KeyError(f"No adapter {name!r} in the bank (names: {', '.join(self.names) or 'none'}).")
        entry = self._entries[name]
        layers = lora_layers(self.base).values()
        for layer in layers:
            # LoRA of non-LoRA entries must not run: disable every LoRA layer for them.
            layer.enable_adapters(entry.config.strategy == "lora")
        if entry.config.strategy == "lora":
            from peft.functional import set_adapter  # only LoRA entries need peft

            set_adapter(self.base, name, inference_mode=True)
        # Put back what the previous adapter replaced, then swap in this adapter's Parameters.
        previous = self._entries[self.active].params if self.active in self._entries else {}
        for key in previous.keys() - entry.params.keys():
            self._set_param(key, self._defaults[key])
        for key, param in entry.params.items():
            self._set_param(key, param)
        self.active = name
        return self

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, **prompts: torch.Tensor) -> torch.Tensor:
        """Run the active adapter without gradients.

        Args:
            image: (B, C, H, W) image in [0, 1].
            **prompts: ``SAM2Segmenter.forward`` keywords (e.g. ``boxes`` (B, 4)).

        Returns:
            Logits (B, K, H, W).

        Raises:
            RuntimeError: when no adapter has been added yet.
        """
        if self.active is None:
            raise RuntimeError("AdapterBank has no adapter yet: call bank.add(name, directory) first.")
        return self.base(image, **prompts)

    # ---- helpers -----------------------------------------------------------------------------------------------------
    def _set_param(self, key: str, param: nn.Parameter | None) -> None:
        owner, _, leaf = key.rpartition(".")
        module = self.base.get_submodule(owner) if owner else self.base
        setattr(module, leaf, param)
