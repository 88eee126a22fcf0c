"""QC figure for one nodule: CT slice, ground truth vs prediction, and the uncertainty map."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_uncertainty_overlay(out_png: str, image: np.ndarray, label: np.ndarray | None, prob: np.ndarray,
                             uncertainty: np.ndarray, title: str = "") -> str:
    """(H, W) slice, label, probability and uncertainty -> PNG: image | GT (green) + prediction (red) | uncertainty."""
    fig, axes = plt.subplots(1, 3, figsize=(11, 4))
    axes[0].imshow(image, cmap="gray")
    axes[0].set_title("CT (windowed)")
    axes[1].imshow(image, cmap="gray")
    if label is not None and label.any():
        axes[1].contour(label, levels=[0.5], colors="lime", linewidths=1)
    if (prob >= 0.5).any():
        axes[1].contour(prob, levels=[0.5], colors="red", linewidths=1)
    axes[1].set_title("truth (green) / prediction (red)")
    im = axes[2].imshow(uncertainty, cmap="magma", vmin=0, vmax=max(float(uncertainty.max()), 1e-6))
    axes[2].set_title("uncertainty")
    fig.colorbar(im, ax=axes[2], fraction=0.046)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return out_png
