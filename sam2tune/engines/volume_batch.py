"""Batch preparation for the 3D bundles: slice windows -> tracker prompts (training), volumes -> key-slice prompts.

Training: each volume gives a random window of consecutive slices (``sam2tune.transforms.RandSliceWindowd``, reversed
at random so backward propagation is trained too); every organ present on the window's first slice is an object
prompted there (and every ``prompt_freq`` slices), then tracked through the window with SAM2's memory
(``SliceWindowInferer``). Evaluation: every organ of the label is prompted on its key slice and propagated both ways
through the whole volume (``VolumeInferer``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from monai.engines.utils import PrepareBatch
from monai.utils import convert_to_tensor

from sam2tune.prompts.objects import object_prompt
from sam2tune.utils.flags import as_bool


class SliceWindowPrepareBatch(PrepareBatch):
    """Slice windows (B, 1, T, H, W) + labels (from RandSliceWindowd) -> frames and prompts for the tracker.

    Every organ on a window's first slice is one object, prompted there (``prompt_mode``) and again with a box every
    ``prompt_freq`` slices where present.

    Args:
        prompt_freq: re-prompt with a box every this many slices (0 = first slice only).
        prompt_mode: the first slice's prompt, a ``sam2tune.prompts.PROMPT_MODES`` mode.
        box_jitter: box jitter as a fraction of the box extent.
        max_objects: at most this many organs per window (a random subset beyond it).
        seed: seed of the jitter and the subset draw.
        pass_label: also hand the targets to the inferer as ``label=`` (for corrective clicks). Any
            ``sam2tune.utils.as_bool`` value.

    Raises:
        ValueError: when ``pass_label`` is not a boolean.
    """

    def __init__(self, prompt_freq: int = 0, prompt_mode: str = "box", box_jitter: float = 0.1, max_objects: int = 13,
                 seed: int = 0, pass_label: bool = False) -> None:
        self.prompt_freq, self.mode, self.jitter, self.max_objects = prompt_freq, prompt_mode, box_jitter, max_objects
        self.rng = np.random.default_rng(seed)
        self.pass_label = as_bool(pass_label, "pass_label")

    def __call__(self, batchdata: Mapping, device=None, non_blocking: bool = False, **kwargs):
        """Dict batch -> (frames (B*T, 1, H, W), targets (O, T, H, W), (), tracker keyword args).

        Args:
            batchdata: {"image": (B, 1, T, H, W), "label": (B, 1, T, H, W) organ ids}.
            device: where frames and targets go.
            non_blocking: passed to ``Tensor.to``.
            **kwargs: unused (MONAI's PrepareBatch signature).

        Returns:
            (frames (B*T, 1, H, W), targets (O, T, H, W) float 0/1 masks of the O objects, (), tracker keywords):
            "frame_table" (O, T) long, the frame index of each object's window slices; "init_prompts", one
            ObjectPrompt per object on its window's slice 0; "step_prompts", {slice: [ObjectPrompt or None per
            object]} box re-prompts every ``prompt_freq`` slices; and "label" (the targets) with ``pass_label``.
            frame_table and the prompts stay on the CPU.

        Raises:
            ValueError: when the image is not 5D, no window's first slice holds an organ, or ``prompt_mode`` is not
                a ``sam2tune.prompts.PROMPT_MODES`` mode.
        """
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


class VolumePromptPrepareBatch(PrepareBatch):
    """Whole volumes (1, 1, D, H, W) + label -> (volume, label, (), {"prompts", "object_ids"}), batch first.

    Every organ of the label is prompted on its key slice.

    Args:
        prompt_mode: the key slice's prompt, a ``sam2tune.prompts.PROMPT_MODES`` mode.
        key_slice: "middle" = middle of the organ's slice range (its largest slice if the organ skips that one),
            "largest" = its largest slice.
        organ_ids: prompt only these label values (default: every organ of the label).
        pass_label: also hand the label to the inferer (``label=``), for the click protocol. Any
            ``sam2tune.utils.as_bool`` value.

    Raises:
        ValueError: for an unknown ``key_slice``, or a ``pass_label`` that is not a boolean.
    """

    def __init__(self, prompt_mode: str = "box", key_slice: str = "middle", organ_ids: Sequence[int] | None = None,
                 pass_label: bool = False) -> None:
        if key_slice not in ("middle", "largest"):
            raise ValueError(f"key_slice must be 'middle' or 'largest', got {key_slice!r}.")
        self.mode, self.key_slice, self.pass_label = prompt_mode, key_slice, as_bool(pass_label, "pass_label")
        self.organ_ids = list(organ_ids) if organ_ids else None

    def __call__(self, batchdata: Mapping, device=None, non_blocking: bool = False, **kwargs):
        """Dict batch of one volume -> (volume, label, (), {"prompts", "object_ids"[, "label"]}).

        Args:
            batchdata: {"image": (1, 1, D, H, W), "label": (1, 1, D, H, W) organ ids}.
            device: where volume and label go.
            non_blocking: passed to ``Tensor.to`` for the volume.
            **kwargs: unused (MONAI's PrepareBatch signature).

        Returns:
            (volume (1, 1, D, H, W), label (1, 1, D, H, W), (), {"prompts": one list of ObjectPrompt per organ,
            on its key slice, "object_ids": the organs' label values}) — organs absent from the label are left
            out; with ``pass_label`` the dict also holds "label" (as the batch holds it, not moved to ``device``).

        Raises:
            ValueError: when the batch holds more than one volume, or ``prompt_mode`` is not a
                ``sam2tune.prompts.PROMPT_MODES`` mode.
        """
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


__all__ = ["SliceWindowPrepareBatch", "VolumePromptPrepareBatch"]
