"""Click curves: Dice after k corrective clicks, one line per model, drawn from click-protocol summaries."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_click_curves(curves: dict[str, list[float]], out_png: str, ylabel: str = "mean Dice") -> str:
    """{model name: dice_at_clicks (K + 1 values)} -> PNG with one line per model; returns ``out_png``.

    x = corrective clicks after the first prompt (0 = the first prompt alone).
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in curves.items():
        ax.plot(range(len(values)), values, "o-", markersize=3, label=name)
    ax.set_xlabel("corrective clicks after the first prompt")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


__all__ = ["plot_click_curves"]
