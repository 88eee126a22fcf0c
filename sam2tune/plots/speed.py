"""Speed plots drawn from benchmark JSON: how 3D propagation grows with objects and with slices."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_propagation_scaling(rows: list[dict], out_png: str) -> str:
    """``sam2tune.speed.inference.propagation_scaling`` rows -> PNG with the objects and the slices curve.

    Args:
        rows: {"curve" ("objects" | "slices"), "objects", "depth", "seconds"} per point.
        out_png: the file to write.

    Returns:
        ``out_png``.
    """
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, curve, key, label in ((axes[0], "objects", "objects", "objects"),
                                  (axes[1], "slices", "depth", "slices")):
        pts = [r for r in rows if r["curve"] == curve]
        ax.plot([r[key] for r in pts], [r["seconds"] for r in pts], "o-")
        fixed = f"{pts[0]['depth']} slices" if curve == "objects" and pts else (
            f"{pts[0]['objects']} objects" if pts else "")
        ax.set_xlabel(f"{label} ({fixed})")
        ax.set_ylabel("seconds per volume")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


__all__ = ["plot_propagation_scaling"]
