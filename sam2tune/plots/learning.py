"""Learning curve of the fast loop: held-out Dice vs labels submitted, with the untrained and full-/train lines."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_learning_curve(rows: list[dict], out_png: str) -> str:
    """Rows of ``sam2tune.tools.measure_active_learning`` -> PNG; returns ``out_png``.

    Args:
        rows: {"labels", "path" ("untrained" | "quick update" | "full /train"), "seconds_to_served",
            "heldout_dice"} per measurement.
        out_png: the file to write.

    Returns:
        ``out_png``.
    """
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4))
    quick = [r for r in rows if r["path"] == "quick update"]
    curve = [r for r in rows if r["path"] in ("untrained", "quick update")]  # labels 0 = the untrained model
    ax.plot([r["labels"] for r in curve], [r["heldout_dice"] for r in curve], "o-", label="quick update (served)")
    ax.set_xticks([r["labels"] for r in curve])
    for r, style in ((next((r for r in rows if r["path"] == "untrained"), None), "k:"),
                     (next((r for r in rows if r["path"] == "full /train"), None), "r--")):
        if r is not None:
            ax.axhline(r["heldout_dice"], linestyle=style[1:], color=style[0], label=f"{r['path']}")
    ax.set_xlabel("labels submitted")
    ax.set_ylabel("held-out Dice (box prompt)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    bx.bar([str(r["labels"]) for r in quick], [r["seconds_to_served"] for r in quick], label="quick update")
    full = next((r for r in rows if r["path"] == "full /train"), None)
    if full is not None:
        bx.axhline(full["seconds_to_served"], color="r", linestyle="--",
                   label=f"full /train ({full['seconds_to_served']:.0f} s)")
    bx.set_xlabel("label submitted (n-th)")
    bx.set_ylabel("seconds from save to served")
    bx.set_yscale("log")
    bx.grid(alpha=0.3)
    bx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


__all__ = ["plot_learning_curve"]
