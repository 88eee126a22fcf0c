"""App settings: MONAI Label `--conf key value` pairs, falling back to SAM2TUNE_ML_<KEY> environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from sam2tune.bundles import list_bundles
from sam2tune.monailabel.validation import SETTINGS_SPECS, InputError, check_device, check_mapping, check_value
from sam2tune.utils import as_bool


@dataclass
class AppSettings:
    """What the app reads from `--conf` (or SAM2TUNE_ML_<KEY>); every field has a working default.

    Attributes:
        models: "all" or comma-separated bundle names.
        model_dir: where fine-tuned weights go, one folder per bundle (default <app_dir>/model).
        sam2_variant / image_size: override the bundles' network size (e.g. tiny / 64 for CPU tests).
        pretrained_checkpoint: base SAM2 checkpoint used until a fine-tuned model.pt exists (None = random init).
        device: "cpu", "cuda", "cuda:N" or "" (= cuda when available).
        finetune: strategy for training on submitted labels (full|decoder_only|lora|adapter|prompt).
        max_epochs / learning_rate / batch_size: fine-tuning defaults, each overridable per /train request.
        mc_samples / dropout / uncertainty: epistemic active learning (MC dropout samples, p, entropy|variance).
        al_max_images: score at most this many unlabeled images per /activelearning call (bounded latency).
        threshold: probability threshold of the returned masks.
        amp: bf16 autocast for infer and train: "" = on CUDA only; "true" / "false" (also "1"/"0", "yes"/"no").
        auto_update: a final label saved with PUT /datastore/label queues a quick update of the served decoder
            (sam2tune.monailabel.quick_update); off by default.
        update_steps / update_replay / update_learning_rate: decoder steps per quick update, earlier final labels
            replayed with the new one, AdamW learning rate.
        embedding_cache: image embeddings each served model keeps for infer and quick updates (0 = none).
    """

    models: str = "all"
    model_dir: str = ""
    sam2_variant: str = ""
    image_size: int = 0
    pretrained_checkpoint: str = ""
    device: str = ""
    finetune: str = "lora"
    max_epochs: int = 5
    learning_rate: float = 1e-4
    batch_size: int = 2
    mc_samples: int = 5
    dropout: float = 0.2
    uncertainty: str = "entropy"
    al_max_images: int = 50
    threshold: float = 0.5
    amp: str = ""
    auto_update: bool = False
    update_steps: int = 30
    update_replay: int = 8
    update_learning_rate: float = 1e-4
    embedding_cache: int = 32
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Every field checked against its whitelist (sam2tune.monailabel.validation.SETTINGS_SPECS)."""
        for f in fields(self):
            if f.name in SETTINGS_SPECS:
                value = getattr(self, f.name)
                if not (value == "" and f.name == "amp"):
                    value = check_value(f.name, value, SETTINGS_SPECS[f.name], "--conf")
                setattr(self, f.name, str(value).lower() if f.name == "amp" else value)
        if self.image_size and (self.image_size < 32 or self.image_size % 16):
            raise InputError(
                "image_size",
                f"--conf image_size={self.image_size}: expected 0 (the bundle's own size) or a "
                f"multiple of 16 from 32 to 4096 (e.g. 64, 256, 1024).",
            )
        check_mapping(self.extra, SETTINGS_SPECS, "--conf", unknown="keep")

    @classmethod
    def from_conf(cls, conf: dict | None, app_dir: str = ".") -> AppSettings:
        """MONAI Label conf dict (+ SAM2TUNE_ML_<KEY> environment) -> validated settings.

        Args:
            conf: `--conf key value` pairs as MONAI Label passes them (strings).
            app_dir: the app folder (default model_dir is <app_dir>/model).

        Returns:
            The settings; ValueError (an InputError naming the key and its allowed values) for a bad value, e.g. a
            string starting with '$', '@' or '%', an unknown device, a strategy or variant that does not exist.
        """
        conf = dict(conf or {})
        kw = {}
        for f in fields(cls):
            if f.name == "extra":
                continue
            env = f"SAM2TUNE_ML_{f.name.upper()}"
            raw = conf.get(f.name, os.environ.get(env))
            if raw is None or raw == "":
                continue
            where = "--conf" if f.name in conf else f"environment {env}:"
            # `--conf x false` arrives as the string "false": booleans go through as_bool (inside check_value)
            value = check_value(f.name, raw, SETTINGS_SPECS[f.name], where)
            kw[f.name] = str(value).lower() if f.name == "amp" else value
        s = cls(**kw, extra={k: v for k, v in conf.items() if k not in {f.name for f in fields(cls)}})
        if not s.model_dir:
            s.model_dir = os.path.join(app_dir, "model")
        return s

    def bundle_names(self) -> list[str]:
        """Bundles to serve: every bundle found (for "all") or the listed ones, checked to exist."""
        available = list_bundles()
        if self.models.strip().lower() == "all":
            return available
        names = [m.strip() for m in self.models.split(",") if m.strip()]
        unknown = [m for m in names if m not in available]
        if unknown:
            raise ValueError(f"--conf models: unknown bundle(s) {unknown}; available: {available} (or 'all').")
        return names

    def network_overrides(self) -> dict:
        """Config overrides (by id) that apply the size settings to a bundle's config."""
        out = {}
        if self.sam2_variant:
            out["sam2_variant"] = self.sam2_variant
        if self.image_size:
            out["image_size"] = self.image_size
        return out

    def use_amp(self, device: str | None = None) -> bool:
        """bf16 autocast on ``device`` (default: the app's): the --conf amp value, else True on CUDA only."""
        device = device or self.torch_device()
        return as_bool(self.amp, "--conf amp") and device.startswith("cuda") if self.amp else device.startswith("cuda")

    def torch_device(self) -> str:
        """The device string to run on ('cpu', 'cuda' or 'cuda:N', checked:
        it is formatted into a config expression)."""
        import torch

        return check_device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
