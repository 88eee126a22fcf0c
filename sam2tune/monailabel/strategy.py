"""Epistemic active learning: score unlabeled images by MC-dropout uncertainty of the bundle's SAM2 network."""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import torch
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from sam2tune.monailabel.errors import bad_request
from sam2tune.monailabel.images import is_photo, load_image, slice_input
from sam2tune.monailabel.model import BundleModel
from sam2tune.networks import mc_dropout_predict

logger = logging.getLogger(__name__)


def uncertainty_score(mean: torch.Tensor, var: torch.Tensor, kind: str = "entropy") -> float:
    """MC-dropout mean probability and variance (B, K, H, W) -> one score: mean binary entropy or mean variance."""
    if kind == "variance":
        return float(var.mean())
    p = mean.clamp(1e-6, 1 - 1e-6)
    return float((-(p * p.log() + (1 - p) * (1 - p).log())).mean())


class EpistemicStrategy(Strategy):
    """Serve the unlabeled image whose prediction is most uncertain under MC dropout (the network's `dropout`).

    Args:
        models: bundle name -> BundleModel built with dropout > 0; the request's `model` picks one (default: first).
        num_samples: stochastic passes per image.
        uncertainty: "entropy" (of the mean probability) or "variance" (across passes).
        max_images: score at most this many unlabeled images (the most recently added last), bounding latency.
    """

    def __init__(
        self, models: dict[str, BundleModel], num_samples: int = 5, uncertainty: str = "entropy", max_images: int = 50
    ) -> None:
        super().__init__(f"Epistemic (MC dropout, {uncertainty}) over SAM2 bundles")
        if not models:
            raise ValueError("EpistemicStrategy needs at least one bundle model.")
        self.models, self.num_samples, self.uncertainty, self.max_images = models, num_samples, uncertainty, max_images

    def score(self, model: BundleModel, path: str) -> float:
        """Uncertainty of one image (2D photo, or a volume's middle slice)."""
        image = load_image(path, model.in_channels, model.hu_window)
        k = image.array.shape[2] // 2 if image.is_volume else -1
        arr = slice_input(image, k, model.in_channels)
        x = torch.from_numpy(np.ascontiguousarray(arr))[None].to(model.device)
        kwargs = {}
        if not model.has_learned_prompt:  # no learned token: ask about the whole field of view
            h, w = x.shape[-2:]
            kwargs["boxes"] = torch.tensor([[0.0, 0.0, float(w), float(h)]], device=model.device)
        with model.lock:  # the image embedding comes from the model's cache: scored again, it is not re-encoded
            kwargs["features"] = model.features(arr, (path, os.path.getmtime(path), k))
            mean, var = mc_dropout_predict(model.network(), self.num_samples, x, **kwargs)
        return uncertainty_score(mean, var, self.uncertainty)

    def __call__(self, request: dict, datastore: Datastore) -> dict | None:
        """Request (`model`, `label_tag`, `labels`) -> {"id", "score", "scores"} of the most uncertain image."""
        requested = request.get("model")
        if requested is not None and requested not in self.models:
            raise bad_request(f"Unknown model {requested!r} for epistemic scoring; served: {sorted(self.models)}.")
        images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
        scores: dict[str, float] = {}
        # Without a `model`, the first bundle that can read some unlabeled image scores them.
        for name in [requested] if requested else list(self.models):
            model = self.models[name]
            want_photo = model.dimension == 2
            paths = {i: datastore.get_image_uri(i) for i in images[: self.max_images]}
            scores = {i: self.score(model, p) for i, p in paths.items() if is_photo(p) == want_photo}
            if scores:
                break
        if not scores:
            return None
        best = max(scores, key=scores.get)
        logger.info(
            "Epistemic (%s, %s): %d images scored, picked %s (%.4f)",
            name,
            self.uncertainty,
            len(scores),
            best,
            scores[best],
        )
        strategy = request.get("strategy", "epistemic")
        datastore.update_image_info(best, {"strategy": {strategy: {"ts": int(time.time()), "score": scores[best]}}})
        return {"id": best, "score": scores[best], "scores": scores, "model": name}
