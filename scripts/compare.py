#!/usr/bin/env python
"""Is SAM2 worth it on my task? Train SAM2 strategies and baselines on one bundle's data, split, budget and metrics.

python scripts/compare.py --bundle <bundle> [--dataset_dir DIR] [--out DIR] [--models sam2:lora,sam2:full,resnet,yolo]
       [--tiny] [--max_epochs N] [--image_size PX] [--batch_size N] [--device cpu|cuda] [--cases N] [--seed S]
       [--collect]

Each model runs in its own process (scripts/train_baseline.py) so its peak memory is its own; every run gets the same
bundle keys (epochs, image size, batch size, seed, data). Without --dataset_dir, phantoms of the bundle's task are
written into <out>/phantoms. --collect only gathers <out>/<model>/run_stats.json of earlier runs.
Writes <out>/comparison.{csv,md,png}: Dice, IoU (the bundle's evaluation on its test split), trainable params,
train images/s (step time, data loading excluded) and peak memory (CUDA max allocated, or CPU peak RSS).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

PHANTOM_TASK = {"optic_cup_fundus_sam2": "refuge", "abdomen_ct_sam2": "btcv", "lung_nodule_ct_sam2": "lung_nodule",
                "knee_cartilage_mri_sam2": "knee", "steel_defect_sam2": "severstal"}
PLOT_COLUMNS = ["mean_dice", "mean_iou", "trainable_params", "train_images_per_s", "peak_memory_mb"]


def parse_models(text: str) -> list[tuple[str, str]]:
    """'sam2:lora,resnet' -> [(row name, model spec)], e.g. [('sam2_lora', 'sam2:lora'), ('resnet', 'resnet')]."""
    out = []
    for spec in (s.strip() for s in text.split(",") if s.strip()):
        model, _, strategy = spec.partition(":")
        if model not in ("sam2", "resnet", "yolo"):
            raise SystemExit(f"error: unknown model {spec!r} in --models; use sam2:<strategy>, resnet or yolo")
        if model == "sam2" and not strategy:
            raise SystemExit(f"error: {spec!r}: give the SAM2 strategy, e.g. sam2:lora")
        out.append((f"sam2_{strategy}" if model == "sam2" else model, spec))
    return out


def run_one(name: str, spec: str, args: argparse.Namespace, dataset_dir: str, out: Path) -> dict:
    """Train + evaluate one model in a child process -> its run_stats (or a row with the failure reason)."""
    model, _, strategy = spec.partition(":")
    cmd = [sys.executable, str(_REPO_ROOT / "scripts" / "train_baseline.py"), "--model", model, "--bundle", args.bundle,
           "--dataset_dir", dataset_dir, "--out", str(out / name), "--name", name]
    if strategy:
        cmd += ["--finetune", strategy]
    if args.tiny:
        cmd.append("--tiny")
    for key in ("max_epochs", "image_size", "batch_size", "num_workers", "learning_rate", "seed", "device"):
        if getattr(args, key) is not None:
            cmd += [f"--{key}", str(getattr(args, key))]
    print(f"[compare] {name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=_REPO_ROOT, capture_output=True, text=True)
    (out / f"{name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"[compare] {name} FAILED ({proc.returncode}): {reason}\n  log: {out / f'{name}.log'}", flush=True)
        return {"name": name, "model": model, "note": f"failed: {reason}"}
    stats = json.loads((out / name / "run_stats.json").read_text())
    print(f"[compare] {name}: Dice {stats.get('mean_dice')}, {time.perf_counter() - t0:.0f} s", flush=True)
    return stats


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="bundle name, e.g. optic_cup_fundus_sam2")
    p.add_argument("--dataset_dir", default=None, help="dataset in the bundle's layout (default: phantoms in --out)")
    p.add_argument("--out", default=None, help="output folder (default: compare_out/<bundle>)")
    p.add_argument("--models", default="sam2:lora,sam2:full,resnet,yolo", help="comma-separated: sam2:<strategy>, resnet, yolo")
    p.add_argument("--tiny", action="store_true", help="configs/cpu_tiny.json for every run (CPU, 64 px)")
    p.add_argument("--max_epochs", type=int, default=None)
    p.add_argument("--image_size", type=int, default=None)
    p.add_argument("--batch_size", type=int, default=None)
    p.add_argument("--num_workers", type=int, default=None)
    p.add_argument("--learning_rate", type=float, default=None, help="one LR for all (default: each model's own)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--cases", type=int, default=8, help="phantom cases when no --dataset_dir")
    p.add_argument("--collect", action="store_true", help="only gather earlier runs' run_stats.json")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run (or collect) the comparison and write the table; returns the exit status."""
    args = build_parser().parse_args(argv)
    from sam2tune.baselines.table import COLUMNS, collect_runs, write_table
    from sam2tune.plots.comparison import plot_comparison

    models = parse_models(args.models)
    out = Path(args.out or Path("compare_out") / args.bundle).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.collect:
        rows = collect_runs(str(out), [n for n, _ in models if (out / n / "run_stats.json").is_file()] or None)
    else:
        dataset_dir = args.dataset_dir
        if dataset_dir is None:
            if args.bundle not in PHANTOM_TASK:
                print(f"error: no phantom writer for bundle {args.bundle!r}; pass --dataset_dir", file=sys.stderr)
                return 2
            from sam2tune.data.phantoms import write_phantoms

            dataset_dir = write_phantoms(PHANTOM_TASK[args.bundle], str(out / "phantoms"), cases=args.cases,
                                         seed=args.seed or 0)["root"]
        rows = [run_one(name, spec, args, str(dataset_dir), out) for name, spec in models]
    columns = COLUMNS + (["note"] if any("note" in r for r in rows) else [])
    csv_path, md_path = write_table(rows, str(out / "comparison.csv"), str(out / "comparison.md"), columns)
    ok = [r for r in rows if r.get("mean_dice") is not None]
    if ok:
        plot_comparison(ok, PLOT_COLUMNS, str(out / "comparison.png"))
    print(f"\nComparison on {args.bundle} -> {out}\n")
    print(Path(md_path).read_text())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
