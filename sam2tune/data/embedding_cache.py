"""Cached SAM2 image embeddings for decoder-side training with a frozen encoder (finetune decoder_only / prompt).

The image encoder is ~90 % of a SAM2 training step. With a frozen encoder its output for a given image never
changes, so it is computed once (no grad, eval mode, bf16 on CUDA with amp) and reused every epoch. The high-res
maps are kept *before* the mask decoder's conv_s0/conv_s1, which train with the decoder and so run every step.

What commutes with the cache: anything that leaves the image pixels alone — prompt simulation and jitter
(SimulatePromptsd), box drop (RandDropBoxd), label-side choices. What does not: every geometric or intensity
augmentation of the image (flips, affine, contrast, noise, ...): the cached embedding would belong to another image.
Entries are keyed by a fingerprint of the encoder weights + model size + a description of the deterministic
preprocessing, so changing any of them invalidates the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from monai.transforms import Compose, Randomizable
from torch import nn

from sam2tune.utils import as_bool, atomic_torch_save, atomic_write_json, unwrap

logger = logging.getLogger(__name__)

# Random transforms that never touch the image pixels, so embeddings of the un-augmented image stay valid.
COMMUTING_TRANSFORMS = ("SimulatePromptsd", "RandDropBoxd")
# Parts of a SAM2Segmenter upstream of (or inside) the cached features.
_ENCODER_PARTS = ("channel_adapter.", "sam.image_encoder.", "sam.no_mem_embed")

Features = dict[str, Any]


def _flatten(transforms: Any) -> list:
    if transforms is None:
        return []
    if isinstance(transforms, Compose):
        return _flatten(list(transforms.transforms))
    if isinstance(transforms, Sequence) and not isinstance(transforms, str):
        return [t for item in transforms for t in _flatten(item)]
    return [transforms]


def non_commuting(transforms: Any, image_key: str = "image") -> list[str]:
    """Names of the random transforms in `transforms` (list or Compose) that change the image, so break the cache."""
    bad = []
    for t in _flatten(transforms):
        name = type(t).__name__
        if name in COMMUTING_TRANSFORMS or not isinstance(t, Randomizable):
            continue
        keys = getattr(t, "keys", None)
        keys = [keys] if isinstance(keys, str) else list(keys) if keys is not None else [image_key]
        if image_key in keys:
            bad.append(name)
    return bad


def check_commutes(transforms: Any, image_key: str = "image") -> None:
    """Raise ValueError when `transforms` hold random image augmentation, which cached embeddings cannot follow."""
    bad = non_commuting(transforms, image_key)
    if bad:
        raise ValueError(
            f"cache_embeddings cannot be used with image augmentation {bad}: cached embeddings belong to the "
            f"un-augmented image. Remove them (bundle key train#augmentation) or set cache_embeddings false. "
            f"Allowed random transforms: {', '.join(COMMUTING_TRANSFORMS)} (prompt-side only)."
        )


def cache_safe(transforms: Sequence, enabled: bool | str, image_key: str = "image") -> list:
    """`transforms` as a list, minus (with a warning naming them) the image augmentations when `enabled`."""
    transforms = list(transforms or [])
    if not as_bool(enabled, "cache_embeddings"):
        return transforms
    bad = set(non_commuting(transforms, image_key))
    if bad:
        logger.warning("cache_embeddings: dropping image augmentation %s (it does not commute with cached embeddings).",
                       sorted(bad))
    return [t for t in transforms if type(t).__name__ not in bad]


def _simple(v: Any) -> bool:
    if isinstance(v, tuple | list):
        return all(_simple(x) for x in v)
    return v is None or isinstance(v, str | int | float | bool)


def describe_transforms(transforms: Any) -> str:
    """A stable text description of deterministic transforms (class names + simple settings) for the fingerprint."""
    parts = []
    for t in _flatten(transforms):
        settings = {}
        for k, v in sorted(vars(t).items()):
            if _simple(v):
                settings[k] = v
            elif hasattr(v, "__dict__") and not isinstance(v, nn.Module | torch.Tensor):
                # One level down: MONAI dict transforms keep their settings in an array transform (e.g. resizer).
                settings |= {f"{k}.{ik}": iv for ik, iv in sorted(vars(v).items()) if _simple(iv)}
        parts.append(f"{type(t).__name__}{json.dumps(settings, sort_keys=True, default=str)}")
    return ";".join(parts)


def encoder_state(network: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters and buffers of `network` that determine its cached features (channel adapter, encoder, no-mem)."""
    net = unwrap(network)
    state = dict(net.named_parameters()) | dict(net.named_buffers())
    return {k: v for k, v in state.items() if k.startswith(_ENCODER_PARTS) or k in ("pixel_mean", "pixel_std")}


def encoder_fingerprint(network: nn.Module, preprocessing: str = "") -> str:
    """sha256 over the encoder weights, the model image size and `preprocessing`: any change gives a new key."""
    h = hashlib.sha256()
    net = unwrap(network)
    h.update(f"image_size={getattr(net, 'image_size', None)};pre={preprocessing}".encode())
    for name, t in sorted(encoder_state(net).items()):
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def trainable_encoder_parameters(network: nn.Module) -> list[str]:
    """Names of encoder-side parameters that require grad (a cache is only valid when this is empty)."""
    return [k for k, v in encoder_state(network).items() if isinstance(v, nn.Parameter) and v.requires_grad]


def batch_ids(batchdata: Mapping, image_key: str = "image") -> list[str]:
    """One identity per sample: the source file of the image (MONAI meta) or, without one, a hash of its pixels."""
    image = batchdata[image_key]
    names = getattr(image, "meta", {}).get("filename_or_obj") if hasattr(image, "meta") else None
    if names is None:
        names = batchdata.get(f"{image_key}_meta_dict", {}).get("filename_or_obj")
    if isinstance(names, str):
        names = [names]
    shape = "x".join(str(s) for s in image.shape[1:])
    if names is not None and len(names) == image.shape[0] and all(names):
        return [f"{n}|{shape}" for n in names]
    arr = torch.as_tensor(image).detach().cpu()
    return [hashlib.sha1(arr[i].contiguous().numpy().tobytes()).hexdigest() + f"|{shape}" for i in range(arr.shape[0])]


class EmbeddingCache:
    """Image features from `network.encode`, computed once per image and reused (memory, or disk under `cache_dir`).

    Args:
        network: a SAM2Segmenter (or DDP-wrapped one) whose encoder is frozen while training.
        cache_dir: folder for one torch file per image under <cache_dir>/<fingerprint>/; None = memory only.
        preprocessing: description of the deterministic preprocessing (see describe_transforms): part of the key.
        amp: encode under bf16 autocast on CUDA (features are stored in bf16 then).
        store_device: where in-memory entries live ("cpu" to spare GPU memory); None = the device of the images.
    """

    def __init__(
        self,
        network: nn.Module,
        cache_dir: str | os.PathLike | None = None,
        preprocessing: str = "",
        amp: bool = False,
        store_device: str | torch.device | None = None,
    ) -> None:
        self.network, self.preprocessing, self.amp = network, preprocessing, bool(amp)
        self.cache_dir = os.fspath(cache_dir) if cache_dir else None
        self.store_device = torch.device(store_device) if store_device else None
        self._memory: dict[str, Features] = {}
        self._fingerprint: str | None = None
        self.hits = self.misses = 0

    # ---- keys ----------------------------------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        """Key of the current encoder + preprocessing (computed once; call refresh() after changing the encoder)."""
        if self._fingerprint is None:
            self._fingerprint = encoder_fingerprint(self.network, self.preprocessing)
        return self._fingerprint

    def refresh(self) -> bool:
        """Recompute the fingerprint; drop in-memory entries and return True if the encoder or settings changed."""
        old, self._fingerprint = self._fingerprint, None
        changed = old is not None and old != self.fingerprint
        if changed:
            logger.info("Embedding cache invalidated: encoder weights or preprocessing changed.")
            self._memory.clear()
        return changed

    def __len__(self) -> int:
        return len(self._memory)

    def _path(self, ident: str) -> str:
        return os.path.join(self.cache_dir, self.fingerprint[:24], hashlib.sha1(ident.encode()).hexdigest() + ".pt")

    # ---- lookup --------------------------------------------------------------------------------------------------
    def check_frozen(self) -> None:
        """Raise ValueError if the network trains encoder-side parameters (the cached features would go stale)."""
        if unwrap(self.network).training and torch.is_grad_enabled():
            trainable = trainable_encoder_parameters(self.network)
            if trainable:
                strategy = getattr(getattr(unwrap(self.network), "finetune_config", None), "strategy", None)
                raise ValueError(
                    f"cache_embeddings needs a frozen image encoder, but finetune {strategy!r} trains "
                    f"{len(trainable)} encoder parameters (e.g. {trainable[0]}): set finetune decoder_only or "
                    "prompt, or cache_embeddings false."
                )

    def features(self, image: torch.Tensor, ids: Sequence[str]) -> Features:
        """(B, C, H, W) images + one identity each -> encode(project_high_res=False)'s dict, computing only misses."""
        if len(ids) != image.shape[0]:
            raise ValueError(f"EmbeddingCache.features got {len(ids)} ids for a batch of {image.shape[0]} images.")
        self.check_frozen()
        items: list[Features | None] = [self._lookup(i) for i in ids]
        missing = [n for n, it in enumerate(items) if it is None]
        self.hits += len(ids) - len(missing)
        self.misses += len(missing)
        if missing:
            computed = self._encode(image[missing])
            for slot, n in enumerate(missing):
                item = {"image_embed": computed["image_embed"][slot]}
                item |= {f"raw_high_res_feats_{k}": f[slot] for k, f in enumerate(computed["raw_high_res_feats"])}
                items[n] = self._store(ids[n], item)
        dev = image.device
        stacked = {k: torch.stack([it[k].to(dev, non_blocking=True) for it in items]) for k in items[0]}
        levels = sorted(k for k in stacked if k.startswith("raw_high_res_feats_"))
        return {"image_embed": stacked["image_embed"], "raw_high_res_feats": [stacked[k] for k in levels]}

    def for_batch(self, batchdata: Mapping, image: torch.Tensor, image_key: str = "image") -> Features:
        """Features of a collated MONAI batch dict whose `image_key` entry (already on device) is `image`."""
        return self.features(image, batch_ids(batchdata, image_key))

    def _lookup(self, ident: str) -> Features | None:
        key = f"{self.fingerprint}|{ident}"
        if key in self._memory:
            return self._memory[key]
        if self.cache_dir and os.path.isfile(self._path(ident)):
            item = torch.load(self._path(ident), map_location="cpu", weights_only=True)
            self._memory[key] = (
                item if self.store_device is None else {k: v.to(self.store_device) for k, v in item.items()}
            )
            return self._memory[key]
        return None

    def _store(self, ident: str, item: Features) -> Features:
        item = {k: v.detach().clone() for k, v in item.items()}  # own storage, not a view into the batch
        if self.cache_dir:
            folder = os.path.dirname(self._path(ident))
            if not os.path.isfile(os.path.join(folder, "cache_info.json")):
                os.makedirs(folder, exist_ok=True)
                atomic_write_json(
                    {"fingerprint": self.fingerprint, "image_size": getattr(unwrap(self.network), "image_size", None),
                     "preprocessing": self.preprocessing, "amp": self.amp},
                    os.path.join(folder, "cache_info.json"),
                )
            atomic_torch_save({k: v.cpu() for k, v in item.items()}, self._path(ident))
        if self.store_device is not None:
            item = {k: v.to(self.store_device) for k, v in item.items()}
        self._memory[f"{self.fingerprint}|{ident}"] = item
        return item

    @torch.no_grad()
    def _encode(self, image: torch.Tensor) -> Features:
        net = unwrap(self.network)
        modes = {m: m.training for m in net.modules()}
        net.eval()  # deterministic features, whatever mode the trainer left the network in
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.amp and image.is_cuda else nullcontext()
        try:
            with autocast:
                # Raw high-res maps: the decoder's conv_s0/conv_s1 train, so they run after the cache, every step.
                return net.encode(image, project_high_res=False)
        finally:
            for m, mode in modes.items():
                m.training = mode

    def warm(
        self, batches: Iterable[Mapping], device: str | torch.device | None = None, image_key: str = "image"
    ) -> int:
        """Fill the cache from a data loader's batches ahead of training; return how many entries it holds."""
        for b in batches:
            image = torch.as_tensor(b[image_key]).to(device) if device is not None else torch.as_tensor(b[image_key])
            with torch.no_grad():
                self.for_batch(b, image, image_key)
        return len(self)
