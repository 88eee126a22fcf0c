"""The fast loop: a final label saved in the datastore fine-tunes the served mask decoder in seconds, in the background.

With ``--conf auto_update true`` every ``PUT /datastore/label`` with tag ``final`` queues a quick update of that
bundle's served network: the new label plus a replay of the most recent earlier final labels become box / click
samples, their image embeddings come from the model's embedding cache (computed once per image, encoder weights and
preprocessing: the encoder stays frozen, so they stay valid), ``update_steps`` AdamW steps train a copy of the mask
decoder (and the learned prompt tokens, when the bundle has them) on them, and the new decoder is swapped into the
served network under its lock, then written to model.pt atomically. Infer requests keep being answered by the old
weights until the swap and never see half-written ones; a newer label while an update runs supersedes it (the
running one stops at its next step, and one update on all labels follows). The full ``POST /train`` is unchanged
(the nightly run); when it writes model.pt, the hot reload drops the embedding cache (its encoder may differ).

Why not the bundle workflow: a quick update must not re-encode every labelled image every time, nor start a
training process; it reuses the served network and the cache, and the update itself is a few decoder steps.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

from sam2tune.losses.propagation import PropagationLoss
from sam2tune.monailabel.images import load_image, read_label, slice_input
from sam2tune.monailabel.model import BundleModel
from sam2tune.prompts.simulate import mask_to_box, sample_points

logger = logging.getLogger(__name__)


@dataclass
class Sample:
    """One training sample of a quick update: an object on one slice (or photo) of a labelled image.

    Attributes:
        image_id: the datastore image.
        key: the embedding-cache key of the slice (path, mtime, slice).
        x: the model input (C, H, W) in [0, 1].
        mask: (H, W) float 0/1 target.
        box: xyxy box (``mask_to_box``), input pixels.
        click: (1, 2) xy centre click (``sample_points(center=True)``), input pixels.
    """

    image_id: str
    key: tuple
    x: np.ndarray
    mask: np.ndarray
    box: np.ndarray
    click: np.ndarray


def label_samples(model: BundleModel, image_id: str, image_path: str, label_path: str,
                  max_slices: int = 8) -> list[Sample]:
    """A labelled datastore image -> one sample per object and slice (at most ``max_slices`` slices per object).

    Args:
        model: the served bundle model (its input channels and HU window, as infer reads images).
        image_id: the datastore id.
        image_path: the image file.
        label_path: its final label file.
        max_slices: per object, slices taken evenly over its extent (volumes).

    Returns:
        The samples (each object value > 0 of the label is an object).
    """
    image = load_image(image_path, model.in_channels, model.hu_window)
    label = read_label(label_path, image)
    mtime = os.path.getmtime(image_path)
    out = []
    for value in [int(v) for v in np.unique(label) if v > 0]:
        obj = label == value
        if image.is_volume:
            present = np.flatnonzero(obj.reshape(-1, obj.shape[2]).any(0))
            picks = present[np.unique(np.linspace(0, len(present) - 1, min(max_slices, len(present))).round()
                                      .astype(int))]
            slices = [(int(k), obj[:, :, k].T) for k in picks]  # model rows are J
        else:
            slices = [(-1, obj)]
        for k, mask in slices:
            coords, _ = sample_points(mask, 1, 0, center=True)
            out.append(Sample(image_id, (image_path, mtime, k), slice_input(image, max(k, 0), model.in_channels),
                              mask.astype(np.float32), mask_to_box(mask), coords.astype(np.float32)))
    return out


class QuickUpdater:
    """Background quick updates of one bundle's served decoder from the datastore's final labels.

    Args:
        model: the served bundle model.
        labelled: returns [(image_id, image path, final label path)] of the datastore, most recent last.
        steps: optimizer steps per update.
        replay: earlier labelled images trained with the new one (most recent first).
        learning_rate: AdamW learning rate of the decoder steps.
        seed: seeds the prompt choice (box or centre click) and the sample order of each update.
    """

    def __init__(self, model: BundleModel, labelled: Callable[[], list[tuple[str, str, str]]], steps: int = 30,
                 replay: int = 8, learning_rate: float = 1e-4, seed: int = 0) -> None:
        self.model, self.labelled = model, labelled
        self.steps, self.replay, self.learning_rate, self.seed = int(steps), int(replay), float(learning_rate), seed
        self.loss = DiceCELoss(sigmoid=True)
        self.tracker_loss = PropagationLoss()
        self._cond = threading.Condition()
        self._wanted = 0  # +1 per submitted label
        self._done = 0  # the request number the served weights include
        self._pending: list[str] = []  # image ids submitted since the last finished update
        self._thread: threading.Thread | None = None
        self.history: list[dict] = []  # one entry per finished (or superseded) update
        self._samples: dict[tuple, list[Sample]] = {}  # (image, label file, label mtime) -> samples: read once

    def submit(self, image_id: str) -> int:
        """Queue a quick update for a newly saved final label of ``image_id``; returns its request number.

        An update already running stops at its next step and the worker starts one that includes this label.
        """
        with self._cond:
            self._wanted += 1
            self._pending.append(image_id)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name=f"quick-update-{self.model.name}",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()
            return self._wanted

    def status(self) -> dict:
        """{"requested", "served" (the request number the served weights include), "running", "last"}."""
        with self._cond:
            running = self._thread is not None and self._thread.is_alive()
            return {"requested": self._wanted, "served": self._done, "running": running,
                    "last": self.history[-1] if self.history else None}

    def wait(self, timeout: float = 60.0) -> bool:
        """Block until every submitted label is in the served weights (tests, scripts); False on timeout."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._done < self._wanted:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def _work(self) -> None:
        while True:
            with self._cond:
                if self._done >= self._wanted:
                    return
                target, newest = self._wanted, list(self._pending)
            try:
                entry = self._update(target, newest)
            except Exception as exc:  # the server keeps serving the old weights; the error is in /info/
                logger.exception("Quick update of %s failed", self.model.name)
                entry = {"request": target, "error": f"{type(exc).__name__}: {exc}", "superseded": False}
                with self._cond:
                    self._done = target
            with self._cond:
                self.history.append(entry)
                del self.history[:-20]
                if not entry.get("superseded"):
                    self._done = max(self._done, target)
                    self._pending = [i for i in self._pending if i not in newest]
                self._cond.notify_all()

    def _read(self, image_id: str, path: str, label: str) -> list[Sample]:
        """``label_samples`` of one labelled image, read from disk only when the label file is new or changed."""
        key = (path, label, os.path.getmtime(label), os.path.getmtime(path))
        if key not in self._samples:
            self._samples = {k: v for k, v in self._samples.items() if k[:2] != key[:2]}  # drop older versions
            self._samples[key] = label_samples(self.model, image_id, path, label)
        return self._samples[key]

    def _superseded(self, target: int) -> bool:
        with self._cond:
            return self._wanted != target

    def _loss(self, net: torch.nn.Module, features: dict, prompt: dict, target: torch.Tensor) -> torch.Tensor:
        """The loss of one sample: target (1, 1, H, W) binary, prompt {"boxes"} or {"point_coords", "point_labels"}.

        Photos are answered by the image path (one mask): Dice + CE on it. A volume is answered through SAM2's
        tracker, which blanks a slice whose object score is negative and, for a single click, keeps the best of
        SAM2's 3 candidate masks as rated by its IoU head (``multimask_output_in_sam``; a box counts as two points:
        one mask). So a volume model is trained as SAM2 trains it (``PropagationLoss``: object score, and for a click
        the best candidate plus the IoU head), besides the one mask of the image path; a decoder updated on the
        single mask alone would not change what propagation answers.
        """
        h, w = target.shape[-2:]
        scale = (net.image_size / w, net.image_size / h)

        def up(low: torch.Tensor) -> torch.Tensor:
            return F.interpolate(low.float(), size=(h, w), mode="bilinear", align_corners=False)

        if self.model.dimension == 2:
            low, _ = net.decode(features, scale=scale, multimask_output=False, **prompt)
            return self.loss(up(low[:, :1]), target)
        low, _, score = net.decode(features, scale=scale, multimask_output=False, object_scores=True, **prompt)
        mask = target[:, 0]  # (O=1, T=1, H, W) for PropagationLoss
        loss = self.tracker_loss({"logits": up(low), "object_scores": score}, mask[None])
        if "point_coords" in prompt and prompt["point_coords"].shape[1] == 1:
            low, iou, score = net.decode(features, scale=scale, multimask_output=True, object_scores=True, **prompt)
            candidates = {"logits": up(low[:, :1]), "candidates": up(low)[:, None], "ious": iou[:, None],
                          "object_scores": score}
            loss = loss + self.tracker_loss(candidates, mask[None])
        return loss

    def _update(self, target: int, newest: list[str]) -> dict:
        t0 = time.perf_counter()
        items = self.labelled()
        new = [i for i in items if i[0] in newest]
        earlier = [i for i in items if i[0] not in newest][::-1][: self.replay]
        chosen = new + earlier
        if not chosen:
            return {"request": target, "superseded": False, "skipped": "no final labels in the datastore"}
        samples = [s for image_id, path, label in chosen for s in self._read(image_id, path, label)]
        used = {path for _, path, _ in chosen}
        self._samples = {k: v for k, v in self._samples.items() if k[0] in used}  # only what the replay can reach
        if not samples:
            return {"request": target, "superseded": False, "skipped": "the final labels are empty"}
        with self.model.lock:
            served = self.model.network()
            encoder = served.sam.image_encoder
            shadow = copy.deepcopy(served, {id(encoder): encoder})  # own decoder, the served encoder shared
            generation = self.model.generation
        features = [self.model.features(s.x, s.key) for s in samples]
        params = [p for n, p in shadow.named_parameters() if n.startswith("sam.sam_mask_decoder.") or
                  n == "prompt_tokens"]
        for p in shadow.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        shadow.train()
        opt = torch.optim.AdamW(params, lr=self.learning_rate)
        rng = np.random.default_rng(self.seed + target)
        losses = []
        for step in range(self.steps):
            if self._superseded(target):
                return {"request": target, "superseded": True, "steps": step}
            i = int(rng.integers(len(samples)))
            s = samples[i]
            kwargs = ({"boxes": torch.from_numpy(s.box.astype(np.float32))[None]} if rng.random() < 0.5 else
                      {"point_coords": torch.from_numpy(s.click)[None], "point_labels": torch.ones(1, 1)})
            kwargs = {k: v.to(self.model.device) for k, v in kwargs.items()}
            truth = torch.from_numpy(s.mask)[None, None].to(self.model.device)
            loss = self._loss(shadow, features[i], kwargs, truth)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        shadow.eval()
        trained_on = sorted({s.image_id for s in samples})
        os.makedirs(self.model.ckpt_dir, exist_ok=True)  # before the first /train the folder may not exist
        tmp = tempfile.NamedTemporaryFile(dir=self.model.ckpt_dir, suffix=".tmp", delete=False).name
        torch.save({k: v.detach().cpu() for k, v in shadow.state_dict().items()}, tmp)
        info = {"source": "quick update", "request": target, "trained_on": trained_on, "steps": self.steps,
                "first_loss": losses[0], "last_loss": losses[-1]}
        if not self.model.swap_decoder(shadow, tmp, generation, info):
            os.unlink(tmp)
            return {"request": target, "superseded": True, "steps": self.steps, "reason": "weights changed"}
        return {**info, "superseded": False, "seconds": round(time.perf_counter() - t0, 3)}


__all__ = ["QuickUpdater", "Sample", "label_samples"]
