"""Dict transform: a run-length string (Kaggle RLE, 1-based, column-major) -> a (1, H, W) label sized like the image."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from sam2tune.data.severstal import rle_decode


class DecodeRLEd(MapTransform):
    """RLE string under `keys` -> float32 MetaTensor (1, H, W) under `label_key`, valued `class_key`'s id (else 1).

    The shape comes from the already loaded image under `image_key` (its last two dims), so phantoms of any size
    and real 1600 x 256 images decode alike. The class value lets SimulatePromptsd(class_ids=...) report the class.
    """

    def __init__(
        self,
        keys: KeysCollection = "rle",
        image_key: str = "image",
        label_key: str = "label",
        class_key: str | None = "class_id",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"DecodeRLEd takes exactly one RLE key, got {list(self.keys)}.")
        self.image_key, self.label_key, self.class_key = image_key, label_key, class_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            if self.image_key not in d:
                raise KeyError(f"DecodeRLEd needs the loaded image under {self.image_key!r} for the mask shape.")
            shape = tuple(int(s) for s in d[self.image_key].shape[-2:])
            try:
                mask = rle_decode(str(d[key]), shape)
            except ValueError as err:
                raise ValueError(f"Item {d.get('id', '?')} (train.csv line {d.get('line', '?')}): {err}") from err
            value = float(d[self.class_key]) if self.class_key and self.class_key in d else 1.0
            label = mask[None].astype(np.float32) * value
            meta = dict(getattr(d[self.image_key], "meta", {}) or {})
            d[self.label_key] = MetaTensor(label, meta=meta)
        return d
