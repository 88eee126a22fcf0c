"""Translate what 3D Slicer's MONAI Label plugin sends (IJK clicks, ROI, slice) into SAM2Segmenter prompts."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sam2tune.monailabel.errors import bad_request


@dataclass
class SlicePrompt:
    """Prompts on one slice in model-input pixels: points (P, 2) xy, labels (P,) 1/0, box (4,) xyxy or None."""

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    box: np.ndarray | None = None

    @property
    def empty(self) -> bool:
        """No click and no box."""
        return len(self.points) == 0 and self.box is None


def _points(request: dict, key: str, label_name: str | None) -> list:
    """Clicks under `key`; DeepEdit-style requests put a label's clicks under the label's own name."""
    pts = request.get(key)
    if pts is None and key == "foreground" and label_name:
        pts = request.get(label_name)
    if pts is None:
        return []
    if not isinstance(pts, list) or any(not isinstance(p, (list, tuple)) or len(p) < 2 for p in pts):
        raise bad_request(
            f"'{key}' must be a list of [i, j] or [i, j, k] clicks in IJK voxel coordinates, got {pts!r}."
        )
    return pts


def parse_prompts(request: dict, ijk_shape: tuple[int, ...], label_name: str | None = None) -> dict[int, SlicePrompt]:
    """Request -> {slice k: SlicePrompt} (k = -1 for 2D photos); 400 for clicks/ROI outside the image or malformed.

    Slicer sends `foreground` / `background` as [[i, j, k], ...], `roi` as [i0, j0, i1, j1(, k0, k1)] and
    optionally `slice`. Model pixels are (x, y) = (i, j): images are given to the model with rows along J.
    """
    is_volume = len(ijk_shape) == 3
    out: dict[int, SlicePrompt] = {}
    default_k = int(request["slice"]) if is_volume and request.get("slice") not in (None, -1, "") else None

    def slot(k: int) -> SlicePrompt:
        return out.setdefault(k, SlicePrompt())

    for key, lab in (("foreground", 1), ("background", 0)):
        for p in _points(request, key, label_name):
            try:
                ijk = [int(round(float(v))) for v in p]
            except (TypeError, ValueError):
                raise bad_request(f"{key} click {p!r} is not numeric.") from None
            k = (ijk[2] if len(ijk) > 2 else default_k) if is_volume else -1
            if k is None:
                raise bad_request(f"{key} click {p!r} has no slice index k and the request has no 'slice'.")
            inside = (
                0 <= ijk[0] < ijk_shape[0] and 0 <= ijk[1] < ijk_shape[1] and (not is_volume or 0 <= k < ijk_shape[2])
            )
            if not inside:
                raise bad_request(f"{key} click {p!r} is outside the image (IJK size {list(ijk_shape)}).")
            s = slot(k)
            s.points = np.concatenate([s.points, np.array([[ijk[0], ijk[1]]], np.float32)])
            s.labels = np.concatenate([s.labels, np.array([lab], np.int64)])

    roi = request.get("roi")
    if roi:
        if not isinstance(roi, list) or len(roi) not in (4, 6):
            raise bad_request(f"'roi' must be [i0, j0, i1, j1] or [i0, j0, i1, j1, k0, k1], got {roi!r}.")
        i0, j0, i1, j1 = (float(v) for v in roi[:4])
        if not (0 <= i0 < i1 <= ijk_shape[0] and 0 <= j0 < j1 <= ijk_shape[1]):
            raise bad_request(f"roi {roi!r} is empty or outside the image (IJK size {list(ijk_shape)}).")
        box = np.array([i0, j0, i1, j1], np.float32)
        if is_volume:
            k0, k1 = (int(roi[4]), int(roi[5])) if len(roi) == 6 else (default_k, default_k)
            if k0 is None or not (0 <= k0 <= k1 < ijk_shape[2] + 1):
                raise bad_request(
                    f"roi {roi!r} has no valid slice range within 0..{ijk_shape[2]} (IJK size {list(ijk_shape)})."
                )
            # The box prompts the ROI's middle slice; propagation covers the rest.
            k = default_k if default_k is not None and k0 <= default_k <= k1 else (k0 + k1) // 2
            k = min(k, ijk_shape[2] - 1)
        else:
            k = -1
        slot(k).box = box
    return out
