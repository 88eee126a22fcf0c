"""MONAI Label infer tasks: interactive SAM2 (Slicer clicks / ROI, 3D propagation) and automatic (learned prompt)."""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from sam2tune.monailabel.errors import bad_request
from sam2tune.monailabel.images import LoadedImage, is_photo, load_image, slice_input, write_mask
from sam2tune.monailabel.model import BundleModel
from sam2tune.monailabel.prompts import SlicePrompt, parse_prompts
from sam2tune.monailabel.sessions import (
    DEFAULT_CAPACITY,
    Decision,
    Session,
    SessionStore,
    corrected_slice,
    decide,
    request_clicks,
    request_roi,
)
from sam2tune.networks.propagator import ObjectPrompt, propagate_volume
from sam2tune.prompts import suggest_click, uncertainty_map
from sam2tune.utils.flags import as_bool

logger = logging.getLogger(__name__)


def _autocast(model: BundleModel) -> torch.autocast:
    """bf16 autocast on CUDA (SAM2's own inference precision) unless `--conf amp false`; a no-op context on CPU."""
    device = model.device
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=model.settings.use_amp(str(device)))


def predict_slice(model: BundleModel, x: np.ndarray, prompt: SlicePrompt | None,
                  mask_prompt: torch.Tensor | None = None,
                  return_low_res: bool = False,
                  cache_key: tuple | None = None) -> np.ndarray | tuple[np.ndarray, torch.Tensor]:
    """Input (C, H, W) in [0, 1] + prompt (model pixels) -> foreground probability (H, W) float32.

    Args:
        model: the bundle's model.
        x: the slice / photo (C, H, W) in [0, 1].
        prompt: clicks and box in its pixels (None: the learned prompt token).
        mask_prompt: SAM low-res mask logits (1, 1, S/4, S/4) of the previous answer, fed back as SAM's mask prompt.
        return_low_res: also return this answer's low-res logits (1, 1, S/4, S/4), CPU float32.
        cache_key: (image file, modification time, slice): the image embedding comes from the model's cache
            (``BundleModel.features``) when that slice was encoded by the served encoder; None encodes it afresh.

    Returns:
        The probability map, or (probability map, low-res logits) with `return_low_res`.
    """
    img = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]
    h, w = img.shape[-2:]
    kwargs = {}
    if prompt is not None and prompt.box is not None:
        kwargs["boxes"] = torch.from_numpy(prompt.box)[None]
    if prompt is not None and len(prompt.points):
        kwargs["point_coords"] = torch.from_numpy(prompt.points)[None]
        kwargs["point_labels"] = torch.from_numpy(prompt.labels)[None]
    with model.lock, torch.no_grad(), _autocast(model):
        net = model.network()
        dev = {k: v.to(model.device) for k, v in kwargs.items()}
        if mask_prompt is not None:
            dev["mask_prompt"] = mask_prompt.to(model.device)
        # encode + decode is what SAM2Segmenter.forward does; decode's low-res logits are what a session keeps
        feats = net.encode(img.to(model.device)) if cache_key is None else model.features(x, cache_key)
        low_res, _ = net.decode(feats, scale=(net.image_size / w, net.image_size / h), **dev)
        low_res = low_res[:, :1].float()
        logits = F.interpolate(low_res, size=(h, w), mode="bilinear", align_corners=False)
    prob = torch.sigmoid(logits[0, 0]).cpu().numpy()
    return (prob, low_res.cpu()) if return_low_res else prob


def suggest_next_click(probs: dict[int, np.ndarray], level: float = 0.5) -> dict | None:
    """Predicted probability maps {slice k: (J, I)} (k = -1 for a photo) -> the response's `suggested_click`.

    The slice is the one with the most uncertain pixels (1 - |2p - 1| >= level): where the model is least sure
    in the whole answer, not necessarily the prompted slice. On it, ``sam2tune.prompts.suggest_click`` gives the
    deepest point of the most uncertain region and flips the prediction there for the label.

    Returns:
        {"point": [i, j] (photo) or [i, j, k] (volume) in IJK voxels, "label": "positive"|"negative", "score"},
        or None when no predicted pixel is uncertain.
    """
    if not probs:
        return None
    counts = {k: int((uncertainty_map(p) >= level).sum()) for k, p in probs.items()}
    k = max(counts, key=lambda s: (counts[s], -abs(s)))  # ties: the first slice
    if counts[k] == 0:
        return None
    click = suggest_click(probs[k], level)
    if click is None:
        return None
    out = click.as_dict()  # model pixels (x, y) = (column, row) = IJK (i, j)
    if k >= 0:
        out["point"] = [*out["point"], int(k)]
    return out


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
    `propagate` (3D, default true), `threshold`, `reset` (start the session over).

    Each (image, label) has a session (sam2tune.monailabel.sessions): a request whose clicks extend the previous
    request's (same ROI) refines the previous answer. Photos and slices predicted alone get the previous low-res
    mask logits back as SAM's mask prompt with all clicks; 3D propagation re-runs from the corrected slice, which
    becomes the key slice, the other prompted slices following as prompts. The response says what happened
    (`session`) and where to click next (`suggested_click`).
    """

    automatic = False

    def __init__(self, model: BundleModel, labels: list[str], dimension: int, threshold: float = 0.5,
                 session_capacity: int = DEFAULT_CAPACITY) -> None:
        kind = "automatic (learned prompt)" if self.automatic else "interactive (clicks / ROI)"
        super().__init__(
            type=InferType.SEGMENTATION if self.automatic else InferType.DEEPGROW,
            labels={name: i + 1 for i, name in enumerate(labels)},
            dimension=dimension,
            description=f"SAM2 {kind} segmentation from bundle {model.name}",
            config={"threshold": threshold, "propagate": True},
        )
        self.model, self.threshold = model, threshold
        self.sessions = SessionStore(session_capacity)

    def is_valid(self) -> bool:
        """Always servable: the network is built on first use (base or fine-tuned weights)."""
        return True

    def _label_value(self, request: dict) -> int:
        """Voxel value to write: the index of the requested `label` name (multi-organ bundles), else 1."""
        label = request.get("label")
        if not isinstance(label, str) or not label:
            return 1
        if label not in self.labels:
            raise bad_request(
                f"Model {self.model.name} has no label {label!r}; its labels are {sorted(self.labels)} (see GET "
                f"/info/)."
            )
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

    def _session_key(self, path: str, label_value: int) -> tuple:
        """(image file, its modification time, label): a replaced image starts a new session."""
        try:
            mtime = os.path.getmtime(path)
        except OSError:
            mtime = None
        return path, mtime, label_value

    def __call__(self, request: dict) -> tuple[str, dict]:
        """Request -> (mask file path, result JSON with label names, weights version, session, suggested click)."""
        start = time.perf_counter()
        path = request["image"]
        if self.dimension == 2 and not is_photo(path):
            raise bad_request(
                f"Model {self.model.name} is 2D and reads photos (JPEG/PNG); {path.rsplit('/', 1)[-1]} is not one."
            )
        image = load_image(path, self.model.in_channels, self.model.hu_window)
        threshold = float(request.get("threshold", self.threshold))
        label_value = self._label_value(request)
        prompts = {} if self.automatic else self._prompts(request, image)
        propagate = image.is_volume and _flag(request.get("propagate", True))
        state = None if self.automatic else {
            "key": self._session_key(path, label_value), "clicks": request_clicks(prompts), "roi": request_roi(prompts),
            "options": (("propagate", propagate),), "reset": _flag(request.get("reset", False), "reset"),
        }
        c = self.model.in_channels
        if image.is_volume and propagate and not self.automatic:
            mask, probs, mean_prob, session = self._propagated(image, prompts, threshold, c, state)
        else:
            mask, probs, mean_prob, session = self._slices(image, prompts, threshold, c, state)
        ext = ".nrrd" if image.is_volume and request.get("result_extension") == ".nrrd" else ""  # OHIF asks for NRRD
        out = write_mask(image, mask * label_value, ext)
        suggestion = suggest_next_click(probs)
        latency = time.perf_counter() - start
        result = {
            "label_names": dict(self.labels),
            "model": self.model.name,
            "weights_version": self.model.weights_version(),
            "weights": dict(self.model.served),
            "foreground_voxels": int(mask.sum()),
            "mean_probability": mean_prob,
            "suggested_click": suggestion,
            "latencies": {"total": round(latency, 4)},
        }
        if session is not None:
            result["session"] = session
        logger.info("%s: %d foreground voxels in %.3f s (%s)", self.model.name, result["foreground_voxels"], latency,
                    (session or {}).get("reason", "automatic"))
        return out, result

    def _decision(self, state: dict | None) -> tuple[Decision, Session | None, int]:
        """Under the model lock: load / reload the weights, then decide whether the request refines its session."""
        self.model.network()  # a hot reload happens here, so the generation compared below is the one that answers
        generation = self.model.generation
        if state is None:
            return Decision(False, "automatic"), None, generation
        stored = self.sessions.get(state["key"])
        return (
            decide(stored, state["clicks"], state["roi"], state["options"], generation, state["reset"]),
            stored,
            generation,
        )

    @staticmethod
    def _session_json(decision: Decision, clicks: int, key_slice: int | None = None) -> dict:
        out = {
            "refined": decision.refined,
            "reason": decision.reason,
            "clicks": clicks,
            "new_clicks": len(decision.new_clicks),
        }
        if key_slice is not None:
            out["key_slice"] = int(key_slice)
        return out

    def _slices(self, image: LoadedImage, prompts: dict, threshold: float, c: int, state: dict | None):
        """Photo, prompted slices alone (`propagate` false) or every slice (automatic) -> (mask, probs, mean, session).

        A refining request gets each slice's previous low-res logits back as SAM's mask prompt (slices that had
        none, e.g. newly clicked ones, start from their clicks alone).
        """
        vol = np.zeros(image.array.shape, np.uint8) if image.is_volume else None
        ks = [-1] if not image.is_volume else (range(image.array.shape[2]) if self.automatic else sorted(prompts))
        probs, low_res = {}, {}
        mtime = os.path.getmtime(image.path)
        with self.model.lock:
            decision, stored, generation = self._decision(state)
            for k in ks:
                x = image.array if k < 0 else slice_input(image, k, c)
                fed = stored.low_res.get(k) if decision.refined and stored is not None else None
                prob, low_res[k] = predict_slice(self.model, x, prompts.get(k), mask_prompt=fed, return_low_res=True,
                                                 cache_key=(image.path, mtime, k))
                probs[k] = prob
                if vol is not None:
                    vol[:, :, k] = (prob >= threshold).T  # model rows are J
            if state is not None:
                self.sessions.put(state["key"], Session(state["clicks"], state["roi"], state["options"], generation,
                                                        low_res))
        mask = vol if vol is not None else (probs[-1] >= threshold).astype(np.uint8)
        mean_prob = float(np.mean([p.mean() for p in probs.values()])) if probs else 0.0
        session = None if state is None else self._session_json(decision, len(state["clicks"]))
        return mask, probs, mean_prob, session

    def _propagated(self, image: LoadedImage, prompts: dict, threshold: float, c: int, state: dict):
        """Prompted slices -> SAM2 memory propagation through the whole volume -> (mask, probs, mean, session).

        A fresh request takes the middle prompted slice as key; a refining one the slice it corrects (the one with
        the new clicks), with that slice's previous low-res logits fed back as SAM's mask prompt (as SAM2's video
        predictor does), so propagation re-runs from there in both directions with the other prompted slices as
        prompts met on the way.
        """
        with self.model.lock:
            decision, stored, generation = self._decision(state)
            keys = sorted(k for k, p in prompts.items() if not p.empty)
            key = corrected_slice(decision.new_clicks) if decision.refined else keys[len(keys) // 2]
            fed = stored.low_res.get(key) if decision.refined and stored is not None else None
            prob, low = self._propagate(image, prompts, c, key, fed)  # (D, J, I), (D, S/4, S/4)
            low_res = {k: low[k][None, None].half() for k in range(low.shape[0])}  # any slice may be corrected next
            self.sessions.put(state["key"], Session(state["clicks"], state["roi"], state["options"], generation,
                                                    low_res, key_slice=key))
        vol = (prob >= threshold).transpose(2, 1, 0).astype(np.uint8)  # model rows are J
        probs = dict(enumerate(prob))
        return vol, probs, float(prob.mean()), self._session_json(decision, len(state["clicks"]), key)

    def _propagate(self, image: LoadedImage, prompts: dict[int, SlicePrompt], c: int, key: int,
                   fed: torch.Tensor | None = None) -> tuple[np.ndarray, torch.Tensor]:
        """Prompted slices -> foreground probability (D, J, I) of one object and its low-res logits (D, S/4, S/4).

        SAM2 memory propagation both ways. `key` is the key slice (SAM2's conditioning frame, where both directions
        start); the other prompted slices refine the prediction when propagation reaches them. `fed`: low-res logits
        of the previous answer on the key slice, fed back with its clicks.
        """
        keys = sorted(k for k, p in prompts.items() if not p.empty)
        obj = [
            ObjectPrompt(
                k,
                box=None if prompts[k].box is None else prompts[k].box.tolist(),
                points=prompts[k].points.tolist() if len(prompts[k].points) else None,
                point_labels=prompts[k].labels.tolist() if len(prompts[k].points) else None,
                mask_logits=fed if k == key and len(prompts[k].points) else None,
            )
            for k in [key] + [k for k in keys if k != key]
        ]
        volume = torch.from_numpy(
            np.stack([slice_input(image, k, c) for k in range(image.array.shape[2])]).astype(np.float32)
        )
        chunk = int(self.model.parser.get("chunk_size", 16) or 16)  # frames per encoder batch (bounds memory)
        with self.model.lock, torch.no_grad(), _autocast(self.model):
            net = self.model.network()
            logits, _, low = propagate_volume(net, volume.to(self.model.device), [obj], chunk_size=chunk,
                                              directions="both", return_low_res=True)
        return torch.sigmoid(logits[0].float()).cpu().numpy(), low[0].float().cpu()


class SAM2AutoInferTask(SAM2InferTask):
    """Automatic SAM2 segmentation with the bundle's learned prompt token: no clicks needed."""

    automatic = True
