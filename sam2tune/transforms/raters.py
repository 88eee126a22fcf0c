"""Multi-rater ground truth: the mean of several binary rater masks, thresholded (REFUGE: 7 raters, mean >= 0.5)."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from .loading import read_image


def rater_mean(paths: Sequence[str | os.PathLike] | str | os.PathLike, level: int = 127) -> np.ndarray:
    """Rater mask files (grey or RGB, foreground white) -> float32 (H, W) fraction of raters marking each pixel.

    Each mask is binarised at ``> level`` (0-255 scale): masks are stored as JPEG, whose artefacts blur 0/255.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if len(paths) == 0:
        raise ValueError("No rater mask paths given: the datalist 'label' entry is an empty list.")
    total: np.ndarray | None = None
    for path in paths:
        mask = read_image(path, mode="L", scale=False)[0] > level
        if total is None:
            total = np.zeros(mask.shape, dtype=np.float32)
        elif mask.shape != total.shape:
            raise ValueError(
                f"Rater mask {os.fspath(path)} has shape {mask.shape}, but {os.fspath(paths[0])} has {total.shape}: "
                "all raters of a case must have the image's size."
            )
        total += mask
    return total / len(paths)


class LoadRaterMeand(MapTransform):
    """Dict transform: list of rater mask paths -> MetaTensor (1, H, W) float32, 1 where mean of raters >= threshold.

    Args:
        keys: keys holding a list of rater mask paths (a single path counts as one rater).
        threshold: fraction of raters needed for foreground (0.5 = majority, the REFUGE convention).
        mean_key: if set, also store the soft rater agreement (1, H, W) float32 in [0, 1] under this key
            (for calibration / uncertainty metrics).
        allow_missing_keys: skip keys that are absent.
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        threshold: float = 0.5,
        mean_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}.")
        self.threshold = threshold
        self.mean_key = mean_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            paths = d[key]
            paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
            mean = rater_mean(paths)
            meta = {
                "filename_or_obj": os.fspath(paths[0]),
                "spatial_shape": np.array(mean.shape),
                "original_channel_dim": 0,
                "num_raters": len(paths),
            }
            # tolerance: k/n in float32 must not miss a threshold it equals (e.g. 3/5 vs 0.6)
            d[key] = MetaTensor((mean >= self.threshold - 1e-6).astype(np.float32)[None], meta=meta)
            if self.mean_key is not None:
                d[self.mean_key] = MetaTensor(mean[None], meta=dict(meta))
        return d
