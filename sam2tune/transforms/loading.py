"""Load 2D photographs (JPEG/PNG/BMP, RGB or grey) as channel-first float images, rows = image height.

Why not MONAI's ``LoadImaged``: its PIL reader returns (W, H) unless ``reverse_indexing=False`` is passed, and
an unreadable JPEG surfaces as a pydicom ``TypeError`` from the reader fallback chain, naming no file. This loader
reads exactly what PIL/scikit-image show (array[row, col]) and names the file on any failure.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from PIL import Image


def read_image(path: str | os.PathLike, mode: str = "RGB", scale: bool = True) -> np.ndarray:
    """Image file -> float32 (C, H, W): C = 3 for mode "RGB", 1 for "L"; values in [0, 1] if ``scale`` else [0, 255]."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image file not found: {path}. Check dataset_dir and the datalist that named it.")
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert(mode), dtype=np.float32)
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError... depending on how a file is broken
        raise ValueError(
            f"Cannot read image file {path} ({type(err).__name__}: {err}). Re-export it as JPEG/PNG or remove the case."
        ) from err
    arr = arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)  # (H, W[, C]) -> (C, H, W)
    return np.ascontiguousarray(arr / 255.0 if scale else arr, dtype=np.float32)


class LoadJPEGd(MapTransform):
    """Dict transform: path under each key -> MetaTensor (C, H, W) float32 in [0, 1] (rows = height, as PIL reads).

    Args:
        keys: keys holding image paths.
        mode: PIL mode to convert to: "RGB" (3 channels; grey files are repeated, what SAM expects) or "L" (1 channel).
        scale: divide by 255 so that values are in [0, 1].
        allow_missing_keys: skip keys that are absent.
    """

    def __init__(
        self, keys: KeysCollection = "image", mode: str = "RGB", scale: bool = True, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if mode not in ("RGB", "L"):
            raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}.")
        self.mode = mode
        self.scale = scale

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = d[key]
            if not isinstance(path, (str, os.PathLike)):
                raise TypeError(f"LoadJPEGd expects a file path under key {key!r}, got {type(path).__name__}.")
            arr = read_image(path, self.mode, self.scale)
            meta = {
                "filename_or_obj": os.fspath(path),
                "spatial_shape": np.array(arr.shape[1:]),  # (H, W)
                "original_channel_dim": 0,
            }
            d[key] = MetaTensor(arr, meta=meta)
        return d
