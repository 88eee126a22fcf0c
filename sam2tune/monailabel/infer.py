"""MONAI Label infer tasks: interactive SAM2 (Slicer clicks / ROI, 3D propagation) and automatic (learned prompt)."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from sam2tune.monailabel.errors import bad_request
from sam2tune.monailabel.images import LoadedImage, is_photo, load_image, slice_input, write_mask
from sam2tune.monailabel.model import BundleModel
from sam2tune.monailabel.prompts import SlicePrompt, parse_prompts
from sam2tune.networks.propagator import ObjectPrompt, propagate_volume
from sam2tune.utils.flags import as_bool

logger = logging.getLogger(__name__)


def _autocast(model: BundleModel) -> torch.autocast:
    """bf16 autocast on CUDA (SAM2's own inference precision) unless `--conf amp false`; a no-op context on CPU."""
    device = model.device
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=model.settings.use_amp(str(device)))


def predict_slice(model: BundleModel, x: np.ndarray, prompt: SlicePrompt | None) -> np.ndarray:
    """Input (C, H, W) in [0, 1] + prompt (model pixels) -> foreground probability (H, W) float32."""
    img = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]
    kwargs = {}
    if prompt is not None and prompt.box is not None:
        kwargs["boxes"] = torch.from_numpy(prompt.box)[None]
    if prompt is not None and len(prompt.points):
        kwargs["point_coords"] = torch.from_numpy(prompt.points)[None]
        kwargs["point_labels"] = torch.from_numpy(prompt.labels)[None]
    with model.lock, torch.no_grad(), _autocast(model):
        net = model.network()
        logits = net(img.to(model.device), **{k: v.to(model.device) for k, v in kwargs.items()})
    return torch.sigmoid(logits[0, 0].float()).cpu().numpy()


def _flag(value, key: str = "propagate") -> bool:
    """Request option -> bool; clients may send JSON booleans or strings ("false", "False", "0"); 400 otherwise."""
    try:
        return as_bool(value, key)
    except ValueError as err:
        raise bad_request(f"infer request: {err}") from err


class SAM2InferTask(InferTask):
    """Interactive SAM2 for one bundle: foreground/background clicks (IJK), ROI box, slice; 3D propagates both ways.

    Request keys (what Slicer's MONAI Label plugin sends, plus options): `image` (resolved by the app),
    `foreground` / `background` [[i, j(, k)]], `roi` [i0, j0, i1, j1(, k0, k1)], `slice`, `label`,
    `propagate` (3D, default true), `threshold`.
    """

    automatic = False

    def __init__(self, model: BundleModel, labels: list[str], dimension: int, threshold: float = 0.5) -> None:
        kind = "automatic (learned prompt)" if self.automatic else "interactive (clicks / ROI)"
        super().__init__(
            type=InferType.SEGMENTATION if self.automatic else InferType.DEEPGROW,
            labels={name: i + 1 for i, name in enumerate(labels)},
            dimension=dimension,
            description=f"SAM2 {kind} segmentation from bundle {model.name}",
            config={"threshold": threshold, "propagate": True},
        )
        self.model, self.threshold = model, threshold

    def is_valid(self) -> bool:
        """Always servable: the network is built on first use (base or fine-tuned weights)."""
        return True

    def _label_value(self, request: dict) -> int:
        """Voxel value to write: the index of the requested `label` name (multi-organ bundles), else 1."""
        label = request.get("label")
        if not isinstance(label, str) or not label:
            return 1
        if label not in self.labels:
            raise bad_request(f"Model {self.model.name} has no label {label!r}; its labels are {sorted(self.labels)} (see GET /info/).")
        return int(self.labels[label])

    def _prompts(self, request: dict, image: LoadedImage) -> dict[int, SlicePrompt]:
        label = request.get("label") if isinstance(request.get("label"), str) else None
        prompts = parse_prompts(request, image.ijk_shape, label or next(iter(self.labels), None))
        if not prompts:
            raise bad_request(
                f"Model {self.model.name}: give at least one foreground click or an ROI "
                f"(or use {self.model.name}_auto where the bundle has a learned prompt)."
            )
        return prompts

    def __call__(self, request: dict) -> tuple[str, dict]:
        """Request -> (mask file path, result JSON with label names, weights version, latency)."""
        start = time.perf_counter()
        path = request["image"]
        if self.dimension == 2 and not is_photo(path):
            raise bad_request(f"Model {self.model.name} is 2D and reads photos (JPEG/PNG); {path.rsplit('/', 1)[-1]} is not one.")
        image = load_image(path, self.model.in_channels, self.model.hu_window)
        threshold = float(request.get("threshold", self.threshold))
        label_value = self._label_value(request)
        prompts = {} if self.automatic else self._prompts(request, image)
        c = self.model.in_channels
        if not image.is_volume:
            prob = predict_slice(self.model, image.array, prompts.get(-1))
            mask = (prob >= threshold).astype(np.uint8)
            mean_prob = float(prob.mean())
        else:
            mask, mean_prob = self._volume(image, prompts, threshold, c, _flag(request.get("propagate", True)))
        ext = ".nrrd" if image.is_volume and request.get("result_extension") == ".nrrd" else ""  # OHIF asks for NRRD
        out = write_mask(image, mask * label_value, ext)
        latency = time.perf_counter() - start
        result = {
            "label_names": dict(self.labels),
            "model": self.model.name,
            "weights_version": self.model.weights_version(),
            "foreground_voxels": int(mask.sum()),
            "mean_probability": mean_prob,
            "latencies": {"total": round(latency, 4)},
        }
        logger.info("%s: %d foreground voxels in %.3f s", self.model.name, result["foreground_voxels"], latency)
        return out, result

    def _volume(self, image: LoadedImage, prompts: dict, threshold: float, c: int, propagate: bool) -> tuple[np.ndarray, float]:
        """Prompted slices (or all slices, automatic) -> (mask (I, J, K) uint8, mean probability of predicted slices).

        Interactive with `propagate`: SAM2 memory propagation through the whole volume from the prompted slices.
        Otherwise each slice to predict (prompted ones, or all for the learned prompt) runs alone through the network.
        """
        vol = np.zeros(image.array.shape, np.uint8)
        if propagate and not self.automatic:
            prob = self._propagate(image, prompts, c)  # (D, J, I)
            vol[:] = (prob >= threshold).transpose(2, 1, 0)  # model rows are J
            return vol, float(prob.mean())
        probs = []
        for k in range(image.array.shape[2]) if self.automatic else sorted(prompts):
            prob = predict_slice(self.model, slice_input(image, k, c), prompts.get(k))
            probs.append(float(prob.mean()))
            vol[:, :, k] = (prob >= threshold).T  # model rows are J
        return vol, float(np.mean(probs)) if probs else 0.0

    def _propagate(self, image: LoadedImage, prompts: dict[int, SlicePrompt], c: int) -> np.ndarray:
        """Prompted slices -> foreground probability (D, J, I) of one object, SAM2 memory propagation both ways.

        The middle prompted slice is the key slice (SAM2's conditioning frame); the other prompted slices refine
        the prediction when propagation reaches them.
        """
        keys = sorted(k for k, p in prompts.items() if not p.empty)
        key = keys[len(keys) // 2]
        obj = [
            ObjectPrompt(
                k,
                box=None if prompts[k].box is None else prompts[k].box.tolist(),
                points=prompts[k].points.tolist() if len(prompts[k].points) else None,
                point_labels=prompts[k].labels.tolist() if len(prompts[k].points) else None,
            )
            for k in [key] + [k for k in keys if k != key]
        ]
        volume = torch.from_numpy(np.stack([slice_input(image, k, c) for k in range(image.array.shape[2])]).astype(np.float32))
        chunk = int(self.model.parser.get("chunk_size", 16) or 16)  # frames per encoder batch (bounds memory)
        with self.model.lock, torch.no_grad(), _autocast(self.model):
            net = self.model.network()
            logits, _ = propagate_volume(net, volume.to(self.model.device), [obj], chunk_size=chunk, directions="both")
        return torch.sigmoid(logits[0].float()).cpu().numpy()


class SAM2AutoInferTask(SAM2InferTask):
    """Automatic SAM2 segmentation with the bundle's learned prompt token: no clicks needed."""

    automatic = True
