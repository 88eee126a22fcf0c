"""Plots drawn from real run outputs: training curves, QC overlays, bar charts."""

from sam2tune.plots.curves import plot_training_history
from sam2tune.plots.overlays import save_overlay

__all__ = ["plot_training_history", "save_overlay"]
