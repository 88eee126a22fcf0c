"""Training curves drawn from training_history.json (never from anything else)."""

from __future__ import annotations

import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_training_history(history_path: str, out_png: str, markers: dict[str, int] | None = None) -> str:
    """Draw loss, validation metrics and learning rates per epoch from `history_path` into `out_png`."""
    with open(history_path) as f:
        records = json.load(f)
    epochs = [r["epoch"] for r in records]
    keys = sorted({k for r in records for k in r})
    val_keys = [k for k in keys if k.startswith("val_")]
    lr_keys = [k for k in keys if k.startswith("lr_")]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))

    def series(k):
        return [r.get(k, math.nan) for r in records]

    axes[0].plot(epochs, series("train_loss"), "o-", label="train loss")
    axes[0].set_title("training loss")
    for k in val_keys:
        axes[1].plot(epochs, series(k), "o-", label=k)
    axes[1].set_title("validation")
    for k in lr_keys:
        axes[2].plot(epochs, series(k), "o-", label=k)
    axes[2].set_title("learning rate")
    axes[2].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        for name, ep in (markers or {}).items():
            ax.axvline(ep, color="grey", linestyle="--", label=name)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
