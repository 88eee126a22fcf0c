"""Bar charts of a model comparison: one panel per column (Dice, IoU, trainable params, images/s, peak memory)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend

LOG_SCALE = ("trainable_params", "train_images_per_s", "peak_memory_mb")


def plot_comparison(rows: list[dict], columns: list[str], out_png: str, label_key: str = "name") -> str:
    """Rows (model -> values) -> one bar panel per column, values annotated, missing values marked n/a."""
    fig, axes = plt.subplots(1, len(columns), figsize=(3.0 * len(columns), 3.6), squeeze=False)
    names = [str(r[label_key]) for r in rows]
    for ax, col in zip(axes[0], columns, strict=True):
        values = [r.get(col) for r in rows]
        heights = [float(v) if isinstance(v, int | float) and not math.isnan(float(v)) else 0.0 for v in values]
        bars = ax.bar(range(len(rows)), heights, color=[f"C{i}" for i in range(len(rows))])
        for bar, v in zip(bars, values, strict=True):
            text = (
                "n/a"
                if v is None or (isinstance(v, float) and math.isnan(v))
                else (f"{v:.3g}" if isinstance(v, float) else f"{v:,}")
            )
            ax.annotate(
                text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=7
            )
        if col in LOG_SCALE and any(h > 0 for h in heights):
            ax.set_yscale("log")
        elif col.startswith("mean_"):
            ax.set_ylim(0, 1.05)
        ax.set_xticks(range(len(rows)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(col, fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
