"""Ablation figures drawn from real run outputs: metric bars, LR schedules per parameter group, parameter counts."""

from __future__ import annotations

import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_ablation_bars(rows: list[dict], metrics: list[str], out_png: str, label_key: str = "setting") -> str:
    """Rows (one per setting, metric -> value) -> grouped bar chart, one group per metric, NaN bars left empty."""
    fig, ax = plt.subplots(figsize=(2.2 * len(metrics) + 3, 4))
    width = 0.8 / max(1, len(rows))
    x = np.arange(len(metrics))
    for i, row in enumerate(rows):
        values = [float(row.get(m, math.nan)) for m in metrics]
        bars = ax.bar(x + i * width - 0.4 + width / 2, np.nan_to_num(values), width, label=row[label_key])
        for bar, v in zip(bars, values, strict=True):
            ax.annotate("n/a" if math.isnan(v) else f"{v:.3f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, metrics)
    ax.set_ylim(0, 1.05)
    ax.set_title("ablation (test split)")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def plot_lr_schedule(history_path: str, out_png: str, markers: dict[str, int] | None = None) -> str:
    """training_history.json -> learning rate per epoch of every parameter group (lr_<group> keys), log scale."""
    with open(history_path) as f:
        records = json.load(f)
    keys = sorted({k for r in records for k in r if k.startswith("lr_")})
    fig, ax = plt.subplots(figsize=(6, 4))
    for k in keys:
        ax.plot([r["epoch"] for r in records], [r.get(k, math.nan) for r in records], "o-", label=k[3:])
    for name, ep in (markers or {}).items():
        ax.axvline(ep, color="grey", linestyle="--", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate (end of epoch)")
    ax.set_title("LR schedule per parameter group")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def plot_parameter_counts(counts: dict[str, tuple[int, int]], out_png: str, title: str = "parameters") -> str:
    """count_parameters() output (component -> (trainable, total)) -> horizontal bars, total vs trainable, log scale."""
    names = [k for k, (_, total) in counts.items() if total > 0]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.5))
    y = np.arange(len(names))
    ax.barh(y + 0.2, [counts[n][1] for n in names], 0.4, label="total")
    ax.barh(y - 0.2, [max(counts[n][0], 0) for n in names], 0.4, label="trainable")
    ax.set_yticks(y, names)
    ax.set_xscale("symlog")
    ax.set_xlabel("parameters")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
