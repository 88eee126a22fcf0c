"""Dict transform that simulates SAM prompts from the (already resized) label, as a MONAI Randomizable transform."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable
from monai.utils import convert_to_dst_type

from sam2tune.prompts.simulate import (
    as_numpy,
    mask_to_box,
    sample_points,
    select_class,
    select_instance,
)
from sam2tune.utils.flags import as_bool

PROMPT_MODES = ("box", "points", "box+points", "none")


class SimulatePromptsd(Randomizable, MapTransform):
    """Label (1, H, W) or (1, D, H, W) -> SAM prompts in that label's pixel coordinates (x = column, y = row).

    Keys written (``prefix`` prepended), shapes fixed for a given configuration so the default collate stacks them:

    - ``box``: float32 (4,) xyxy (6 in 3D), inclusive tight box, jittered by ``box_jitter``; only in box modes.
    - ``point_coords``: float32 (P, 2) as (x, y) ((P, 3) in 3D), P = num_pos + num_neg; only in point modes.
    - ``point_labels``: float32 (P,): 1 positive, 0 negative, -1 padding (SAM's "not a point"); only in point modes.
    - ``prompt_valid``: float32 scalar, 0.0 when the (selected) object is empty: box is zeros, all points padding.
    - ``prompt_class``: int, the class prompted (``class_ids`` mode; -1 if none present), else 1.

    With ``class_ids`` or ``instance`` the label itself is replaced by the selected binary object (float32, same
    type/meta as before), so that the loss compares the prediction with the object that was prompted.

    Args:
        keys: the one label key.
        mode: "box", "points", "box+points" or "none" (prompt-free models, e.g. learned prompt tokens).
        num_pos: positive clicks per sample.
        num_neg: negative clicks per sample (from background near the object).
        box_jitter: each box side moves by up to this fraction of the box extent (training augmentation; 0 = tight).
        center_points: deterministic clicks (first positive = foreground point farthest from the mask border);
            set True with ``box_jitter=0`` for evaluation and inference-time simulation.
        instance: prompt one connected component chosen at random (multi-instance masks, e.g. nodules).
        class_ids: label values that may be prompted (multi-class label maps); one present class is picked at random.
            None: foreground = label > 0.5.
        prefix: prepended to every key written (e.g. "prompt_" -> "prompt_box").
        allow_missing_keys: do nothing when the label key is absent (e.g. inference without labels).
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        mode: str = "box",
        num_pos: int = 1,
        num_neg: int = 0,
        box_jitter: float = 0.0,
        center_points: bool = False,
        instance: bool = False,
        class_ids: Sequence[int] | None = None,
        prefix: str = "",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"SimulatePromptsd takes exactly one label key, got {list(self.keys)}.")
        if mode not in PROMPT_MODES:
            raise ValueError(f"mode must be one of {PROMPT_MODES}, got {mode!r}.")
        if num_pos < 0 or num_neg < 0:
            raise ValueError(f"num_pos and num_neg must be >= 0, got {num_pos} and {num_neg}.")
        if not 0.0 <= box_jitter < 1.0:
            raise ValueError(f"box_jitter is a fraction of the box size in [0, 1), got {box_jitter}.")
        if class_ids is not None and len(class_ids) == 0:
            raise ValueError("class_ids is empty: give the label values to prompt, or null for a binary label.")
        self.mode = mode
        self.num_pos = int(num_pos)
        self.num_neg = int(num_neg)
        self.box_jitter = float(box_jitter)
        self.center_points = as_bool(center_points, "center_points")
        self.instance = as_bool(instance, "instance")
        self.class_ids = None if class_ids is None else [int(c) for c in class_ids]
        self.prefix = prefix
        self._seed = 0

    def randomize(self, data: object = None) -> None:
        """Draw one sub-seed per call from ``self.R``, so ``set_random_state`` makes the whole call repeatable."""
        self._seed = int(self.R.randint(0, 2**31 - 1))

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            self.randomize()
            rng = np.random.default_rng(self._seed)
            label = d[key]
            arr = as_numpy(label)
            if arr.ndim not in (3, 4) or arr.shape[0] != 1:
                raise ValueError(
                    f"SimulatePromptsd expects a channel-first single-channel label (1, H, W) or (1, D, H, W) under "
                    f"{key!r}, got shape {arr.shape}; one-hot labels: pass the class map and class_ids instead."
                )
            spatial = arr[0]
            if self.class_ids is not None:
                fg, cls = select_class(spatial, self.class_ids, rng)
            else:
                fg, cls = spatial > 0.5, 1
            if self.instance:
                fg = select_instance(fg, rng)
            if self.class_ids is not None or self.instance:
                d[key] = convert_to_dst_type(fg[None].astype(np.float32), label, dtype=np.float32)[0]
            d.update(self._prompts(fg, rng))
            d[self.prefix + "prompt_class"] = int(cls)
        return d

    def _prompts(self, fg: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Bool object mask (spatial) -> the prompt entries for this transform's mode."""
        out: dict[str, np.ndarray] = {self.prefix + "prompt_valid": np.float32(fg.any())}
        if "box" in self.mode:
            out[self.prefix + "box"] = mask_to_box(fg, self.box_jitter, rng)
        if "points" in self.mode:
            coords, labels = sample_points(fg, self.num_pos, self.num_neg, rng, center=self.center_points)
            out[self.prefix + "point_coords"] = coords
            out[self.prefix + "point_labels"] = labels
        return out
