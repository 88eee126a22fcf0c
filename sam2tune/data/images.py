"""Datalists for inference on user files: one image, or every image in a folder."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


def image_datalist(input_path: str, box: Sequence[float] | None = None, exts: Sequence[str] = IMAGE_EXTS) -> list[dict]:
    """File or folder -> [{"image": path, "id": stem, "box": (4,) xyxy or NaN (= use the learned prompt)}]."""
    if not input_path or not os.path.exists(input_path):
        raise FileNotFoundError(
            f"--input_path {input_path!r} does not exist: give an image file or a folder of images."
        )
    if os.path.isdir(input_path):
        files = sorted(os.path.join(input_path, f) for f in os.listdir(input_path) if f.lower().endswith(tuple(exts)))
        if not files:
            raise FileNotFoundError(f"No images ({', '.join(exts)}) in folder {input_path}.")
    else:
        files = [input_path]
    if box is not None and len(box) != 4:
        raise ValueError(f"--box must be 4 numbers [x0, y0, x1, y1] in image pixels, got {box!r}.")
    b = np.asarray(box if box is not None else [np.nan] * 4, dtype=np.float32)
    return [{"image": f, "id": os.path.splitext(os.path.basename(f))[0], "box": b.copy()} for f in files]
