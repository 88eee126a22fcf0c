"""Drop the box prompt of some training samples so a learned prompt token learns to segment without one."""

from __future__ import annotations

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform


class RandDropBoxd(RandomizableTransform, MapTransform):
    """With probability `prob`, replace the (4,) box under `keys` by NaNs: SAM2Segmenter reads that as "no box"."""

    def __init__(self, keys: KeysCollection = "box", prob: float = 0.5, allow_missing_keys: bool = False) -> None:
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, keys, allow_missing_keys)

    def __call__(self, data: dict) -> dict:
        """Return a copy of `data` whose boxes are NaN when the random draw says so."""
        d = dict(data)
        self.randomize(None)
        if self._do_transform:
            for key in self.key_iterator(d):
                d[key] = np.full_like(np.asarray(d[key], dtype=np.float32), np.nan)
        return d
