"""3D engines pieces for MONAI's SupervisedTrainer / SupervisedEvaluator: slice-window training with SAM2 memory,
whole-volume propagation for evaluation, the propagation loss and gradient averaging for torchrun.

Training: each volume gives a random window of consecutive slices (sam2tune.transforms.ct.RandSliceWindowd, reversed
at random so backward propagation is trained too); every organ present on the window's first slice is an object
prompted there (and every `prompt_freq` slices), then tracked through the window with SAM2's memory. Evaluation: every organ of the label is
prompted on its middle slice and propagated both ways through the whole volume.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents, PrepareBatch
from monai.inferers import Inferer
from monai.losses import DiceLoss
from monai.utils import convert_to_tensor
from torch import nn

from sam2tune.networks.propagator import ObjectPrompt, encode_frames, propagate_volume, track_objects
from sam2tune.prompts.corrections import error_click, error_slice
from sam2tune.prompts.objects import object_prompt
from sam2tune.utils.dist import unwrap
from sam2tune.utils.flags import as_bool

logger = logging.getLogger(__name__)


class SliceWindowPrepareBatch(PrepareBatch):
    """Slice windows (B, 1, T, H, W) + labels (from RandSliceWindowd) -> frames and prompts for the tracker.

    Every organ on a window's first slice is one object, prompted there (`prompt_mode`) and again with a box every
    `prompt_freq` slices where present (0 = first slice only). Returns (frames (B*T, 1, H, W), targets (O, T, H, W),
    (), {"frame_table" (O, T), "init_prompts", "step_prompts"}).
    """

    def __init__(self, prompt_freq: int = 0, prompt_mode: str = "box", box_jitter: float = 0.1, max_objects: int = 13, seed: int = 0,
                 pass_label: bool = False) -> None:
        self.prompt_freq, self.mode, self.jitter, self.max_objects = prompt_freq, prompt_mode, box_jitter, max_objects
        self.rng = np.random.default_rng(seed)
        self.pass_label = as_bool(pass_label, "pass_label")  # targets also as `label=`, for corrective clicks

    def __call__(self, batchdata: Mapping, device=None, non_blocking: bool = False, **kwargs):
        """Dict batch -> (frames, targets, (), tracker keyword args)."""
        # plain tensors: MetaTensor batches carry per-item metadata that breaks slicing across the batch
        images = convert_to_tensor(batchdata["image"], track_meta=False)
        labels = np.asarray(convert_to_tensor(batchdata["label"], track_meta=False))
        if images.ndim != 5:
            raise ValueError(f"Slice windows must be (B, 1, T, H, W), got {tuple(images.shape)}: add RandSliceWindowd.")
        n_vol, _, t = images.shape[:3]
        targets, table, init, steps = [], [], [], {}
        for b in range(n_vol):
            window = labels[b, 0]
            organs = [int(v) for v in np.unique(window[0]) if v != 0]
            if len(organs) > self.max_objects:
                organs = sorted(self.rng.choice(organs, self.max_objects, replace=False).tolist())
            for organ in organs:
                o = len(init)
                binary = window == organ
                targets.append(torch.from_numpy(binary.astype(np.float32)))
                table.append(torch.arange(b * t, (b + 1) * t))
                init.append(object_prompt(binary[0], 0, self.mode, self.jitter, self.rng))
                for s in range(self.prompt_freq, t, self.prompt_freq) if self.prompt_freq else ():
                    if binary[s].any():
                        steps.setdefault(s, {})[o] = object_prompt(binary[s], s, "box", self.jitter, self.rng)
        if not init:
            raise ValueError("No organ on the first slice of any window: check the labels hold organs 1-13.")
        step_prompts = {s: [d.get(o) for o in range(len(init))] for s, d in steps.items()}
        frames = images[:, 0].reshape(n_vol * t, 1, *images.shape[-2:]).to(device=device, non_blocking=non_blocking)
        targets = torch.stack(targets).to(device=device, non_blocking=non_blocking)
        kwargs = {"frame_table": torch.stack(table), "init_prompts": init, "step_prompts": step_prompts}
        if self.pass_label:
            kwargs["label"] = targets
        return frames, targets, (), kwargs


def _with_click(prompt: ObjectPrompt | None, k: int, xy: np.ndarray, label: float) -> ObjectPrompt:
    """A slice's prompt (or None) + one click -> the prompt with the click added to its earlier ones."""
    points = [list(map(float, p)) for p in (prompt.points or [])] if prompt is not None else []
    labels = [int(v) for v in (prompt.point_labels or [])] if prompt is not None else []
    return ObjectPrompt(k, box=None if prompt is None else prompt.box, points=points + [[float(xy[0]), float(xy[1])]],
                        point_labels=labels + [int(label)], mask=None if prompt is None else prompt.mask)


class SliceWindowInferer(Inferer):
    """Training inferer: encode the window frames, track the objects with SAM2 memory -> {"logits", "object_scores"}.

    Args:
        correction_rounds: corrective clicks per object after the first tracking pass (needs ``label=``, from
            ``SliceWindowPrepareBatch(pass_label=True)``). Each round clicks the window slice where the object's
            error is largest (``sam2tune.prompts.error_slice`` / ``error_click``), adds the click to that slice's
            prompts and tracks the window again through SAM2's memory; the encoder runs once. The output then also
            holds every round under "rounds" (the last round at the top level) and PropagationLoss averages them.
    """

    def __init__(self, correction_rounds: int = 0) -> None:
        from sam2tune.engines.interactive import _count

        self.correction_rounds = _count(correction_rounds, "correction_rounds")

    def __call__(self, inputs: torch.Tensor, network: nn.Module, frame_table, init_prompts, step_prompts=None,
                 label: torch.Tensor | None = None) -> dict:
        """(N, 1, H, W) frames -> {"logits": (O, T, H, W), "object_scores": (O, T), "candidates": (O, T, 3, H, W),
        "ious": (O, T, 3)}: the chosen masks, object scores, SAM2's candidate masks and their predicted IoUs."""
        net = unwrap(network)
        features = encode_frames(net, inputs)
        h, w = inputs.shape[-2:]
        if self.correction_rounds and label is None:
            raise ValueError("correction_rounds > 0 needs the targets: SliceWindowPrepareBatch(pass_label=True).")
        init, steps = list(init_prompts), {s: list(v) for s, v in (step_prompts or {}).items()}
        rounds = []
        for r in range(self.correction_rounds + 1):
            out = self._track(net, features, frame_table, init, steps, (h, w))
            rounds.append(out)
            if r == self.correction_rounds:
                break
            with torch.no_grad():
                pred = (out["logits"] > 0).cpu().numpy()
                truth = (label > 0.5).cpu().numpy()
            for o in range(len(init)):
                k = error_slice(pred[o], truth[o])
                if k is None:
                    continue
                xy, lab = error_click(pred[o, k], truth[o, k])
                if k == 0:
                    init[o] = _with_click(init[o], 0, xy, lab)
                else:
                    row = steps.setdefault(k, [None] * len(init))
                    row[o] = _with_click(row[o], k, xy, lab)
        return {**rounds[-1], "rounds": rounds} if self.correction_rounds else rounds[0]

    @staticmethod
    def _track(net, features, frame_table, init, steps, hw) -> dict:
        h, w = hw
        masks, scores, cands, ious = track_objects(net, features, frame_table, init, steps, (h, w), high_res=True, candidates=True)
        if masks.shape[-2:] != (h, w):
            masks = F.interpolate(masks, size=(h, w), mode="bilinear", align_corners=False)
            cands = F.interpolate(cands.flatten(1, 2), size=(h, w), mode="bilinear", align_corners=False).unflatten(1, cands.shape[1:3])
        return {"logits": masks, "object_scores": scores, "candidates": cands, "ious": ious}


def _candidate_loss(dice, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice + BCE per candidate: logits (N, K, H, W), target (N, H, W) -> (N, K)."""
    tg = target[:, None].expand_as(logits)
    d = dice(logits.flatten(0, 1)[:, None], tg.flatten(0, 1)[:, None]).reshape(logits.shape[:2])
    bce = F.binary_cross_entropy_with_logits(logits, tg, reduction="none").mean((-2, -1))
    return d, bce


class PropagationLoss(nn.Module):
    """SAM2's video-training loss on slices where the object is present: Dice + BCE on the best of SAM2's candidate
    masks (min over candidates, as SAM2 trains its multimask output), L1 between predicted and actual IoU of every
    candidate; plus BCE on the object-score logits of every slice.

    Why the candidates: on tracking frames SAM2 outputs 3 masks and keeps the one its IoU head rates best. Training
    only that mask leaves the IoU head untrained, so the choice stays arbitrary and the chosen token changes from
    slice to slice; without candidates in `pred` the chosen mask alone is trained.
    """

    def __init__(
        self,
        dice_weight: float = 1.0,
        bce_weight: float = 1.0,
        object_weight: float = 1.0,
        iou_weight: float = 1.0,
        object_balance: bool = False,
        window_dice: bool = False,
    ) -> None:
        super().__init__()
        self.dice_weight, self.bce_weight, self.object_weight, self.iou_weight = dice_weight, bce_weight, object_weight, iou_weight
        self.object_balance, self.window_dice = object_balance, window_dice
        self.dice = DiceLoss(sigmoid=True, reduction="none")

    def _object_loss(self, scores: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """BCE on object-score logits (O, T); balanced: mean of the present-slice and absent-slice means, since
        present slices far outnumber absent ones and the head otherwise learns "always present"."""
        bce = F.binary_cross_entropy_with_logits(scores, present.float(), reduction="none")
        if not self.object_balance or present.all() or not present.any():
            return bce.mean()
        return 0.5 * (bce[present].mean() + bce[~present].mean())

    def forward(self, pred: dict, target: torch.Tensor) -> torch.Tensor:
        """pred {"logits": (O, T, H, W), "object_scores": (O, T)[, "candidates": (O, T, K, H, W), "ious": (O, T, K)]},
        target (O, T, H, W) binary -> scalar loss. With corrective clicks ("rounds" in pred): the mean over rounds."""
        if "rounds" in pred:
            return torch.stack([self.forward(r, target) for r in pred["rounds"]]).mean()
        scores = pred["object_scores"].float()
        present = target.flatten(2).amax(-1) > 0  # (O, T)
        loss = self.object_weight * self._object_loss(scores, present)
        if not present.any():
            return loss
        tg = target[present].float()
        # masks of absent-predicted objects are -1024 (no gradient); clamping keeps the loss value readable
        if "candidates" in pred:
            lg = pred["candidates"][present].float().clamp(-20, 20)  # (N, K, H, W)
        else:
            lg = pred["logits"][present].float().clamp(-20, 20)[:, None]
        d, bce = _candidate_loss(self.dice, lg, tg)
        per = self.dice_weight * d + self.bce_weight * bce  # (N, K)
        if self.window_dice:
            # Dice over each object's whole window (best candidate per slice): small masks on single slices make
            # per-slice Dice noisy; the window sum weighs slices by their organ area, as volume Dice does
            best = per.argmin(1)
            chosen = lg[torch.arange(len(lg)), best]  # (N, H, W)
            obj = present.nonzero()[:, 0]  # object of each present slice
            prob, tgf = torch.sigmoid(chosen).flatten(1), tg.flatten(1)
            n_obj = scores.shape[0]
            inter = torch.zeros(n_obj, device=lg.device).index_add(0, obj, (prob * tgf).sum(1))
            total = torch.zeros(n_obj, device=lg.device).index_add(0, obj, prob.sum(1) + tgf.sum(1))
            has = torch.zeros(n_obj, dtype=torch.bool, device=lg.device).index_fill(0, obj, True)
            wdice = (1 - (2 * inter + 1e-5) / (total + 1e-5))[has].mean()
            loss = loss + self.dice_weight * wdice + self.bce_weight * bce[torch.arange(len(lg)), best].mean()
        else:
            loss = loss + per.min(1).values.mean()
        if "ious" in pred and self.iou_weight:
            with torch.no_grad():
                hit = (lg > 0).float()
                inter = (hit * tg[:, None]).flatten(2).sum(-1)
                union = (hit + tg[:, None]).clamp(max=1).flatten(2).sum(-1)
                actual = inter / union.clamp(min=1)
            loss = loss + self.iou_weight * F.l1_loss(pred["ious"][present].float(), actual)
        return loss


class VolumePromptPrepareBatch(PrepareBatch):
    """Whole volumes (1, 1, D, H, W) + label -> (volume, label, (), {"prompts", "object_ids"}), batch first.

    Every organ of the label is prompted on its key slice: "middle" = middle of its slice range (the largest slice
    if the organ skips that one), "largest" = its largest slice. ``pass_label`` also hands the label to the inferer
    (``label=``), for the click protocol.
    """

    def __init__(self, prompt_mode: str = "box", key_slice: str = "middle", organ_ids: Sequence[int] | None = None,
                 pass_label: bool = False) -> None:
        if key_slice not in ("middle", "largest"):
            raise ValueError(f"key_slice must be 'middle' or 'largest', got {key_slice!r}.")
        self.mode, self.key_slice, self.pass_label = prompt_mode, key_slice, as_bool(pass_label, "pass_label")
        self.organ_ids = list(organ_ids) if organ_ids else None

    def __call__(self, batchdata: Mapping, device=None, non_blocking: bool = False, **kwargs):
        """Dict batch of one volume -> (volume (1, 1, D, H, W), label (1, 1, D, H, W), (), {"prompts", "object_ids"})."""
        image = convert_to_tensor(batchdata["image"], track_meta=False)
        label = convert_to_tensor(batchdata["label"], track_meta=False)
        if image.shape[0] != 1:
            raise ValueError(f"Volume evaluation takes one volume per batch, got {image.shape[0]}: set batch_size 1.")
        lab = np.asarray(label[0, 0])
        prompts, ids = [], []
        for organ in self.organ_ids or [int(v) for v in np.unique(lab) if v != 0]:
            binary = lab == organ
            area = binary.reshape(binary.shape[0], -1).sum(1)
            if not area.any():
                continue
            ks = np.nonzero(area)[0]
            k = int((ks[0] + ks[-1]) // 2) if self.key_slice == "middle" else int(area.argmax())
            if not area[k]:
                k = int(area.argmax())
            prompts.append([object_prompt(binary[k], k, self.mode)])
            ids.append(organ)
        kwargs = {"prompts": prompts, "object_ids": ids, **({"label": label} if self.pass_label else {})}
        return image.to(device=device, non_blocking=non_blocking), label.to(device), (), kwargs


class VolumeInferer(Inferer):
    """Propagate every prompted organ through the volume -> (1, num_classes, D, H, W) scores whose argmax is the
    label map (channel 0 = 0, the decision threshold; organs not prompted stay at -1024). Times each volume."""

    def __init__(self, num_classes: int = 14, chunk_size: int = 16, directions: str = "both") -> None:
        self.num_classes, self.chunk_size, self.directions = num_classes, chunk_size, directions
        self.times: list[float] = []

    def __call__(self, inputs: torch.Tensor, network: nn.Module, prompts, object_ids) -> torch.Tensor:
        """(1, 1, D, H, W) volume -> (1, num_classes, D, H, W)."""
        if inputs.ndim != 5 or inputs.shape[0] != 1:
            raise ValueError(f"VolumeInferer takes one (1, 1, D, H, W) volume, got shape {tuple(inputs.shape)}.")
        inputs = inputs[0].permute(1, 0, 2, 3)  # slices become SAM2 frames: (D, 1, H, W)
        depth, _, h, w = inputs.shape
        out = torch.full((1, self.num_classes, depth, h, w), -1024.0, device=inputs.device)
        out[:, 0] = 0.0
        if inputs.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        if prompts:
            with torch.no_grad():
                logits, _ = propagate_volume(unwrap(network), inputs, prompts, self.chunk_size, self.directions)
            for o, organ in enumerate(object_ids):
                out[0, organ] = logits[o].float()
        if inputs.is_cuda:
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - t0)
        return out


class GradientAllReduce:
    """Average gradients over torchrun ranks before the optimizer step (no-op outside torch.distributed).

    The 3D trainer calls SAM2's tracking functions directly rather than the network's forward, so a
    DistributedDataParallel wrapper would never see the forward; this handler does its gradient sync instead.
    At start it also broadcasts rank 0's parameters (ranks are seeded differently, so random parts differ). Attach it
    before GradientClipping.
    """

    def attach(self, engine: Engine) -> None:
        """Broadcast parameters when training starts; all-reduce on BACKWARD_COMPLETED (before optimizer.step)."""
        engine.add_event_handler(Events.STARTED, self.broadcast)
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    @staticmethod
    def broadcast(engine: Engine) -> None:
        """Copy rank 0's parameters to every rank (no-op outside torch.distributed)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            with torch.no_grad():
                for p in unwrap(engine.network).parameters():
                    dist.broadcast(p.data, src=0)

    def __call__(self, engine: Engine) -> None:
        """All-reduce (mean) every trainable parameter's gradient."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        world = dist.get_world_size()
        for group in engine.optimizer.param_groups:
            for p in group["params"]:
                if p.requires_grad:
                    if p.grad is None:  # a part unused on this rank still joins the collective
                        p.grad = torch.zeros_like(p)
                    dist.all_reduce(p.grad)
                    p.grad.div_(world)


__all__ = [
    "GradientAllReduce",
    "PropagationLoss",
    "SliceWindowInferer",
    "SliceWindowPrepareBatch",
    "VolumeInferer",
    "VolumePromptPrepareBatch",
]
