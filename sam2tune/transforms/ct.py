"""CT volumes for 3D work: NIfTI / DICOM series / converted slice folders -> (1, D, H, W), HU windowed to [0, 1];
random slice windows for training the tracker."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.transforms import MapTransform

from sam2tune.data.btcv import read_slice_folder
from sam2tune.io.volumes import read_volume

# BTCV's customary abdominal soft-tissue window (MONAI's BTCV tutorials use the same range).
DEFAULT_WINDOW = (-175.0, 250.0)


def window_hu(volume: np.ndarray, window: Sequence[float] = DEFAULT_WINDOW) -> np.ndarray:
    """HU array (any shape) -> float32 in [0, 1]: clip to window (low, high) then rescale."""
    low, high = float(window[0]), float(window[1])
    if not high > low:
        raise ValueError(f"HU window must be (low, high) with high > low, got {window}.")
    return np.clip((np.asarray(volume, np.float32) - low) / (high - low), 0.0, 1.0)


class LoadVolumed(MapTransform):
    """Load `image` (and `label`) volumes -> (1, D, H, W) tensors; the image HU-windowed to [0, 1].

    Sources: a NIfTI file, a DICOM series folder, or a slice-layout case folder of <i>.jpg (already windowed 8-bit,
    so only rescaled to [0, 1]; its label is the sibling mask/<case>/ folder of <i>.npy). Adds `affine` (4x4) and
    `spacing` ((dz, dy, dx) mm; identity / 1 mm for slice folders) so predictions can go back onto the input grid.
    """

    def __init__(self, keys: Sequence[str] = ("image", "label"), window: Sequence[float] = DEFAULT_WINDOW,
                 image_key: str = "image") -> None:
        super().__init__(keys)
        self.window, self.image_key = tuple(window), image_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        """{"image": path, "label": path, ...} -> {"image": (1, D, H, W) float, "label": (1, D, H, W) int16, "affine",
        "spacing"}."""
        d = dict(data)
        image_path = str(d[self.image_key])
        if os.path.isdir(image_path) and not _is_dicom_folder(image_path):
            label_dir = str(d["label"]) if "label" in self.keys and "label" in d else None
            image, label = read_slice_folder(image_path, label_dir)
            d[self.image_key] = torch.from_numpy(image)[None]
            if label is not None:
                d["label"] = torch.from_numpy(label.astype(np.int16))[None]
            d["affine"], d["spacing"] = torch.eye(4, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
            return d
        for key in self.key_iterator(d):
            vol = read_volume(str(d[key]))
            if key == self.image_key:
                d[key] = torch.from_numpy(window_hu(vol.array, self.window))[None]
                d["affine"] = torch.as_tensor(vol.affine)
                d["spacing"] = torch.as_tensor(vol.spacing, dtype=torch.float64)
            else:
                d[key] = torch.from_numpy(np.rint(vol.array).astype(np.int16))[None]
        return d


class RandSliceWindowd(MapTransform):
    """Crop a random window of `window` consecutive slices from (1, D, H, W) `keys`, whose first slice holds an organ.

    With probability `reverse_prob` the window runs backwards (slice order flipped), so the tracker learns both
    directions. Volumes shorter than the window are padded by repeating their last slice (collation needs one size).
    """

    def __init__(
        self,
        keys: Sequence[str] = ("image", "label"),
        window: int = 8,
        reverse_prob: float = 0.5,
        label_key: str = "label",
        seed: int = 0,
    ) -> None:
        super().__init__(keys)
        if window < 2:
            raise ValueError(f"window must be >= 2 slices, got {window}.")
        self.window, self.reverse_prob, self.label_key = window, reverse_prob, label_key
        self.rng = np.random.default_rng(seed)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        """(1, D, H, W) volumes -> (1, window, H, W) windows (same slices for every key)."""
        d = dict(data)
        label = np.asarray(d[self.label_key])[0]
        depth, t = label.shape[0], self.window
        occupied = label.reshape(depth, -1).any(1)
        reverse = self.rng.random() < self.reverse_prob
        if reverse:
            firsts = [k for k in range(min(t - 1, depth - 1), depth) if occupied[k]] or [depth - 1]
        else:
            firsts = [k for k in range(max(depth - t + 1, 1)) if occupied[k]] or [0]
        first = int(self.rng.choice(firsts))
        order = np.arange(first, first - t, -1) if reverse else np.arange(first, first + t)
        order = torch.as_tensor(np.clip(order, 0, depth - 1))
        for key in self.key_iterator(d):
            d[key] = torch.as_tensor(d[key])[:, order]
        return d


def _is_dicom_folder(path: str) -> bool:
    """True when a folder holds DICOM files rather than <i>.jpg slices."""
    names = os.listdir(path)
    return not any(n.lower().endswith(".jpg") for n in names)


__all__ = ["DEFAULT_WINDOW", "LoadVolumed", "RandSliceWindowd", "window_hu"]
