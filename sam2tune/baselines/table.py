"""Comparison table of run_stats.json records: CSV and Markdown, numbers copied from the runs, never computed here."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

COLUMNS = ["name", "init", "mean_dice", "mean_iou", "epochs_trained", "learning_rate", "trainable_params",
           "train_images_per_s", "train_seconds", "peak_memory_mb", "memory_kind", "n_test", "device"]


def collect_runs(root: str, names: list[str] | None = None) -> list[dict]:
    """run_stats.json of each sub-folder of `root` (or of `names` in that order) -> list of records."""
    base = Path(root)
    dirs = [base / n for n in names] if names else sorted(p.parent for p in base.glob("*/run_stats.json"))
    missing = [str(d / "run_stats.json") for d in dirs if not (d / "run_stats.json").is_file()]
    if missing:
        raise FileNotFoundError(f"No run results at {missing}: run them first (scripts/compare.py without --collect).")
    return [json.loads((d / "run_stats.json").read_text()) for d in dirs]


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        if 0 < abs(value) < 0.01:  # learning rates: 0.0001 would print as 0.0001 but 1e-05 as 0.0000
            return f"{value:.3g}"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_table(rows: list[dict], out_csv: str, out_md: str, columns: list[str] | None = None,
                title: str | None = None) -> tuple[str, str]:
    """Rows -> CSV (raw values) and a Markdown table (formatted, under `title` when given); returns both paths."""
    columns = columns or COLUMNS
    with open(out_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = [title, ""] if title else []
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    Path(out_md).write_text("\n".join(lines) + "\n")
    return out_csv, out_md
