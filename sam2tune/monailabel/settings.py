"""App settings: MONAI Label `--conf key value` pairs, falling back to SAM2TUNE_ML_<KEY> environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from sam2tune.bundles import list_bundles
from sam2tune.utils.flags import as_bool


@dataclass
class AppSettings:
    """What the app reads from `--conf` (or SAM2TUNE_ML_<KEY>); every field has a working default.

    Attributes:
        models: "all" or comma-separated bundle names.
        model_dir: where fine-tuned weights go, one folder per bundle (default <app_dir>/model).
        sam2_variant / image_size: override the bundles' network size (e.g. tiny / 64 for CPU tests).
        pretrained_checkpoint: base SAM2 checkpoint used until a fine-tuned model.pt exists (None = random init).
        device: "cpu", "cuda" or "" (= cuda when available).
        finetune: strategy for training on submitted labels (full|decoder_only|lora|adapter|prompt).
        max_epochs / learning_rate / batch_size: fine-tuning defaults, each overridable per /train request.
        mc_samples / dropout / uncertainty: epistemic active learning (MC dropout samples, p, entropy|variance).
        al_max_images: score at most this many unlabeled images per /activelearning call (bounded latency).
        threshold: probability threshold of the returned masks.
        amp: bf16 autocast for infer and train: "" = on CUDA only; "true" / "false" (also "1"/"0", "yes"/"no").
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
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_conf(cls, conf: dict | None, app_dir: str = ".") -> AppSettings:
        """MONAI Label conf dict (+ environment) -> validated settings."""
        conf = dict(conf or {})
        kw = {}
        for f in fields(cls):
            if f.name == "extra":
                continue
            raw = conf.get(f.name, os.environ.get(f"SAM2TUNE_ML_{f.name.upper()}"))
            if raw is None or raw == "":
                continue
            typ = type(f.default)
            try:
                # `--conf x false` arrives as the string "false": booleans go through as_bool, never bool()
                kw[f.name] = as_bool(raw, f"--conf {f.name}") if typ is bool else typ(raw)
            except ValueError as err:
                raise ValueError(f"--conf {f.name} {raw!r}: expected a {typ.__name__}.") from err
        s = cls(**kw, extra={k: v for k, v in conf.items() if k not in {f.name for f in fields(cls)}})
        if not s.model_dir:
            s.model_dir = os.path.join(app_dir, "model")
        if s.amp:
            s.amp = str(as_bool(s.amp, "--conf amp")).lower()  # fails at start-up, not at the first request
        if s.uncertainty not in ("entropy", "variance"):
            raise ValueError(f"--conf uncertainty must be 'entropy' or 'variance', got {s.uncertainty!r}.")
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
        """The device string to run on."""
        import torch

        return self.device or ("cuda" if torch.cuda.is_available() else "cpu")
