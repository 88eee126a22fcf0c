"""QC overlays: image, ground truth, prediction and the prompt in one PNG."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _to_hwc(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3 and img.shape[0] in (1, 3):
        img = np.moveaxis(img, 0, -1)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    lo, hi = float(np.nanmin(img)), float(np.nanmax(img))
    return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)


def save_overlay(
    out_png: str,
    image: np.ndarray,
    label: np.ndarray | None,
    pred: np.ndarray,
    box: np.ndarray | None = None,
    points: np.ndarray | None = None,
    point_labels: np.ndarray | None = None,
    title: str = "",
) -> str:
    """Image (C,H,W) or (H,W), label/pred (H,W) -> PNG with GT in green, prediction in red, prompt in yellow."""
    img = _to_hwc(image)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    for ax, (name, mask, colour) in zip(
        axes,
        (("image + prompt", None, None), ("ground truth", label, "lime"), ("prediction", pred, "red")),
        strict=True,
    ):
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        if mask is not None:
            ax.contour(np.asarray(mask).squeeze() > 0.5, levels=[0.5], colors=colour, linewidths=1.2)
        ax.set_title(name)
        ax.axis("off")
    if box is not None and np.any(box):
        x0, y0, x1, y1 = np.asarray(box, dtype=float)
        axes[0].add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="yellow", lw=1.5))
    if points is not None:
        pts = np.asarray(points, dtype=float).reshape(-1, 2)
        # no labels = positive
        lab = np.ones(len(pts)) if point_labels is None else np.asarray(point_labels).reshape(-1)
        for (x, y), lb in zip(pts, lab, strict=True):
            if lb >= 0:
                axes[0].plot(x, y, "+" if lb > 0 else "x", color="yellow" if lb > 0 else "cyan", ms=10, mew=2)
    if label is not None:
        axes[2].contour(np.asarray(label).squeeze() > 0.5, levels=[0.5], colors="lime", linewidths=0.8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png
