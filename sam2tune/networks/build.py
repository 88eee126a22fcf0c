"""Build any SAM2 / SAM2.1 variant from the `sam2` package's own configs and load official checkpoints."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
from sam2.build_sam import build_sam2
from sam2.modeling.sam2_base import SAM2Base

logger = logging.getLogger(__name__)

VARIANTS = ("tiny", "small", "base_plus", "large")
_CONFIG_SUFFIX = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
# (trunk embed_dim, number of Hiera blocks): how a state_dict reveals its variant.
_VARIANT_SIGNATURE = {(96, 12): "tiny", (96, 16): "small", (112, 24): "base_plus", (144, 48): "large"}
OFFICIAL_URLS = {
    ("2.1", v): f"https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_{n}.pt"
    for v, n in {"tiny": "tiny", "small": "small", "base_plus": "base_plus", "large": "large"}.items()
} | {
    ("2", v): f"https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_{n}.pt"
    for v, n in {"tiny": "tiny", "small": "small", "base_plus": "base_plus", "large": "large"}.items()
}


@dataclass
class CheckpointReport:
    """What loading a checkpoint did: its path, detected variant and the keys that did not match.

    Attributes:
        path: the checkpoint file.
        variant: the SAM2 variant its weights reveal (``checkpoint_variant``), None if unknown.
        missing_keys: model keys the file lacks.
        unexpected_keys: file keys the model lacks.
    """

    path: str
    variant: str | None
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        """Whether every key matched (no missing and no unexpected key)."""
        return not self.missing_keys and not self.unexpected_keys


def sam2_config_name(variant: str, version: str = "2.1") -> str:
    """Name the `sam2` package's config file of a variant.

    Args:
        variant: tiny | small | base_plus | large.
        version: SAM2 release, "2.1" or "2".

    Returns:
        The hydra config name, e.g. ``configs/sam2.1/sam2.1_hiera_t.yaml``.

    Raises:
        ValueError: for an unknown variant or version.
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown sam2_variant {variant!r}: choose one of {', '.join(VARIANTS)}.")
    if version not in ("2", "2.1"):
        raise ValueError(f"Unknown SAM2 version {version!r}: choose '2' or '2.1'.")
    prefix = "sam2.1" if version == "2.1" else "sam2"
    return f"configs/{prefix}/{prefix}_hiera_{_CONFIG_SUFFIX[variant]}.yaml"


def build_sam2_model(
    variant: str = "tiny",
    image_size: int = 1024,
    checkpoint: str | None = None,
    version: str = "2.1",
    device: str | torch.device = "cpu",
    warn_random_init: bool = True,
) -> SAM2Base:
    """Build a SAM2Base of `variant` at a square `image_size` with `sam2.build_sam.build_sam2`, in eval mode.

    Args:
        variant: tiny | small | base_plus | large.
        image_size: square model input size, a positive multiple of 32 (Hiera's total stride).
        checkpoint: official SAM2 checkpoint to load (``load_sam2_checkpoint``); None = random init.
        version: SAM2 release, "2.1" or "2".
        device: device to build on.
        warn_random_init: log a loud warning (with the download URL) when no checkpoint is given.

    Returns:
        The SAM2 model.

    Raises:
        ValueError: for an unknown variant or version, an image size that is not a positive multiple of 32, or a
            checkpoint that does not fit (see ``load_sam2_checkpoint``).
        FileNotFoundError: when `checkpoint` does not exist.
    """
    config = sam2_config_name(variant, version)
    if image_size % 32 != 0 or image_size < 32:
        raise ValueError(f"image_size={image_size} must be a positive multiple of 32 (Hiera's total stride).")
    overrides = [f"++model.image_size={image_size}"]
    model = build_sam2(config, None, device=str(device), mode="eval", hydra_overrides_extra=overrides)
    if checkpoint:
        load_sam2_checkpoint(model, checkpoint, variant=variant, version=version)
    elif warn_random_init:
        logger.warning(
            "=" * 78 + "\nNO PRETRAINED CHECKPOINT: SAM2 %s is RANDOMLY INITIALISED. Results will be far below "
            "those of the official weights.\nDownload %s and pass --pretrained_checkpoint PATH.\n" + "=" * 78,
            variant,
            OFFICIAL_URLS[(version, variant)],
        )
    return model


def checkpoint_variant(state_dict: dict[str, torch.Tensor]) -> str | None:
    """Guess the SAM2 variant of a state_dict from its Hiera width and depth.

    Args:
        state_dict: an official SAM2 state_dict (keys ``image_encoder.*``, no ``sam.`` prefix).

    Returns:
        tiny | small | base_plus | large, or None when the keys match no known variant.
    """
    pos = state_dict.get("image_encoder.trunk.pos_embed")
    if pos is None:
        return None
    blocks = {k.split(".")[3] for k in state_dict if k.startswith("image_encoder.trunk.blocks.")}
    return _VARIANT_SIGNATURE.get((int(pos.shape[1]), len(blocks)))


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Read a checkpoint file safely with ``torch.load(weights_only=True)`` onto the CPU.

    Args:
        path: a checkpoint file: a state_dict, or ``{"model": state_dict}`` as Meta's releases are.

    Returns:
        The state_dict (a ``{"model": ...}`` wrapper removed).

    Raises:
        FileNotFoundError: when `path` does not exist (the message gives the official download URL).
        ValueError: when torch cannot read the file with weights_only, or it holds no state_dict of tensors.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Checkpoint not found: {path}. Download an official SAM2 checkpoint (e.g. "
            f"{OFFICIAL_URLS[('2.1', 'tiny')]}) or set pretrained_checkpoint to null for random init."
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name and the fix
        raise ValueError(f"Cannot read checkpoint {path} with torch.load(weights_only=True): {e}") from e
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
        ckpt = ckpt["model"]
    if not isinstance(ckpt, dict) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise ValueError(f"Checkpoint {path} holds no state_dict (expected {{'model': state_dict}} or a state_dict).")
    return ckpt


def load_sam2_checkpoint(
    model: SAM2Base, path: str, variant: str | None = None, version: str = "2.1"
) -> CheckpointReport:
    """Load an official SAM2 checkpoint into `model`, refusing another variant and reporting key mismatches.

    Tolerant on purpose (Meta's releases differ by a few keys): missing / unexpected keys are logged and returned;
    another variant, a shape mismatch or a file with no SAM2 key at all raise. Fine-tuned sam2tune files load
    strictly instead (`sam2tune.networks.state_fit.load_finetuned_state_dict`).

    Args:
        model: the SAM2Base to load into (in place).
        path: the checkpoint file.
        variant: the variant `model` was built as; None skips the variant check.
        version: SAM2 release of `model` ("2.1" or "2"), for the download URL in messages.

    Returns:
        What was loaded: path, detected variant, missing and unexpected keys.

    Raises:
        FileNotFoundError: when `path` does not exist.
        ValueError: when the file is unreadable, is another variant, has a tensor of another shape, or holds no
            SAM2 key at all.
    """
    state_dict = read_state_dict(path)
    found = checkpoint_variant(state_dict)
    if variant is not None and found is not None and found != variant:
        raise ValueError(
            f"Checkpoint {path} is SAM2 '{found}' but sam2_variant='{variant}'. "
            f"Set --sam2_variant {found}, or use {OFFICIAL_URLS[(version, variant)]}."
        )
    own = model.state_dict()
    wrong_shape = [k for k, v in state_dict.items() if k in own and own[k].shape != v.shape]
    if wrong_shape:
        raise ValueError(f"Checkpoint {path} does not fit this model: shape mismatch for {wrong_shape[:5]} ...")
    if not own.keys() & state_dict.keys():
        raise ValueError(
            f"Checkpoint {path} holds none of SAM2's keys (e.g. {sorted(state_dict)[:3]}): not a SAM2 checkpoint. "
            f"Give an official SAM2 checkpoint ({OFFICIAL_URLS[(version, variant or 'tiny')]}) or a sam2tune model.pt."
        )
    result = model.load_state_dict(state_dict, strict=False)
    report = CheckpointReport(path, found, list(result.missing_keys), list(result.unexpected_keys))
    if report.exact:
        logger.info("Loaded SAM2 checkpoint %s (variant %s), all keys matched.", path, found)
    else:
        logger.warning(
            "Loaded SAM2 checkpoint %s with %d missing keys %s and %d unexpected keys %s.",
            path,
            len(report.missing_keys),
            report.missing_keys[:10],
            len(report.unexpected_keys),
            report.unexpected_keys[:10],
        )
    return report
