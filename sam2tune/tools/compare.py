"""Is SAM2 worth it on my task? Train SAM2 strategies and baselines on one bundle's data, split, budget and metrics.

python scripts/compare.py --bundle <bundle> [--dataset_dir DIR] [--out DIR]
       [--models sam2:full,sam2:lora+decoder,sam2:lora,resnet,yolo] [--pretrained_checkpoint CKPT]
       [--tiny] [--max_epochs N] [--image_size PX] [--batch_size N] [--device cpu|cuda] [--cases N] [--seed S]
       [--learning_rate LR] [--patience N] [--collect]
(the same: ``sam2tune-compare ...`` or ``python -m sam2tune.tools.compare ...``)

Each model runs in its own process (``python -m sam2tune.tools.train_baseline``, i.e. scripts/train_baseline.py) so
its peak memory is its own; every run gets the same bundle keys (epochs, image size, batch size, seed, data,
early-stop patience). `sam2:<strategy>+decoder` also trains the mask decoder's own weights
(finetune_settings#train_mask_decoder), which pure LoRA keeps frozen: from random init a frozen random decoder cannot
learn. Without --pretrained_checkpoint SAM2 starts from random init, like the
from-scratch baselines, and then gets their learning rate (1e-3) instead of the bundle's fine-tuning rate.
--patience defaults to the number of epochs, so early stopping cannot fire and every model gets the whole budget
(YOLO-seg scores Dice 0 until its confidences pass 0.25, which a short patience mistakes for a plateau).
Without --dataset_dir, phantoms of the bundle's task are written into <out>/phantoms. --collect only gathers
<out>/<model>/run_stats.json of earlier runs. Writes <out>/comparison.{csv,md,png}: Dice, IoU (the bundle's
evaluation on its test split), epochs trained, learning rate, trainable params, train images/s (step time, data
loading excluded) and peak memory (CUDA max allocated, or CPU peak RSS).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from sam2tune.tools import tiny_settings

PHANTOM_TASK = {"optic_cup_fundus_sam2": "refuge", "abdomen_ct_sam2": "btcv", "lung_nodule_ct_sam2": "lung_nodule",
                "knee_cartilage_mri_sam2": "knee", "steel_defect_sam2": "severstal"}
PLOT_COLUMNS = ["mean_dice", "mean_iou", "trainable_params", "train_images_per_s", "peak_memory_mb"]
DEFAULT_MODELS = "sam2:full,sam2:lora+decoder,sam2:lora,resnet,yolo"
# SAM2 from random init trains from scratch like the baselines, so it gets their rate (as scripts/demo.py); the
# bundle's 1e-4 is a fine-tuning rate for pretrained weights.
RANDOM_INIT_SAM2_LR = 1e-3
SAM2_EXTRAS = {"decoder": "finetune_settings#train_mask_decoder=true"}


def parse_models(text: str) -> list[tuple[str, str]]:
    """'sam2:lora+decoder,resnet' -> [(row name, model spec)], e.g. [('sam2_lora+decoder', 'sam2:lora+decoder'),
    ('resnet', 'resnet')]; `+decoder` after a SAM2 strategy also trains the mask decoder."""
    out = []
    for spec in (s.strip() for s in text.split(",") if s.strip()):
        model, _, strategy = spec.partition(":")
        if model not in ("sam2", "resnet", "yolo"):
            raise SystemExit(f"error: unknown model {spec!r} in --models; "
                             "use sam2:<strategy>[+decoder], resnet or yolo")
        if model == "sam2" and not strategy.partition("+")[0]:
            raise SystemExit(f"error: {spec!r}: give the SAM2 strategy, e.g. sam2:lora")
        extras = strategy.split("+")[1:]
        unknown = [e for e in extras if e not in SAM2_EXTRAS]
        if unknown or (extras and model != "sam2"):
            raise SystemExit(f"error: {spec!r}: only SAM2 strategies take extras, one of {sorted(SAM2_EXTRAS)}")
        out.append((f"sam2_{strategy}" if model == "sam2" else model, spec))
    return out


def budget_epochs(args: argparse.Namespace) -> int:
    """Epochs every run trains: --max_epochs, else --tiny's, else the bundle's max_epochs."""
    if args.max_epochs is not None:
        return args.max_epochs
    if args.tiny:
        return int(tiny_settings()["max_epochs"])
    from sam2tune.baselines.workflow import bundle_value

    return int(bundle_value(args.bundle, "max_epochs"))


def run_command(spec: str, name: str, args: argparse.Namespace, dataset_dir: str, out: Path) -> list[str]:
    """One model spec -> the train_baseline command line (same budget keys for every model)."""
    model, _, strategy = spec.partition(":")
    strategy, *extras = strategy.split("+") if strategy else [""]
    cmd = [sys.executable, "-m", "sam2tune.tools.train_baseline", "--model", model, "--bundle", args.bundle,
           "--dataset_dir", dataset_dir, "--out", str(out / name), "--name", name]
    if strategy:
        cmd += ["--finetune", strategy]
    for extra in extras:
        cmd += ["--set", SAM2_EXTRAS[extra]]
    if args.tiny:
        cmd.append("--tiny")
    for key in ("max_epochs", "image_size", "batch_size", "num_workers", "seed", "device"):
        if getattr(args, key) is not None:
            cmd += [f"--{key}", str(getattr(args, key))]
    lr = args.learning_rate
    if model == "sam2":
        if args.pretrained_checkpoint:
            cmd += ["--pretrained_checkpoint", args.pretrained_checkpoint]
        elif lr is None:
            lr = RANDOM_INIT_SAM2_LR
    elif lr is None:
        from sam2tune.baselines.workflow import DEFAULT_LR

        lr = DEFAULT_LR[model]  # explicit on the command line, so each row's log shows its rate
    if lr is not None:
        cmd += ["--learning_rate", str(lr)]
    patience = args.patience if args.patience is not None else budget_epochs(args)
    return cmd + ["--set", f"early_stop_patience={patience}"]


def run_one(name: str, spec: str, args: argparse.Namespace, dataset_dir: str, out: Path) -> dict:
    """Train + evaluate one model in a child process -> its run_stats (or a row with the failure reason)."""
    cmd = run_command(spec, name, args, dataset_dir, out)
    print(f"[compare] {name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    (out / f"{name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"[compare] {name} FAILED ({proc.returncode}): {reason}\n  log: {out / f'{name}.log'}", flush=True)
        return {"name": name, "model": spec.partition(":")[0], "note": f"failed: {reason}"}
    stats = json.loads((out / name / "run_stats.json").read_text())
    stats["wall_seconds"] = round(time.perf_counter() - t0, 1)
    print(f"[compare] {name}: Dice {stats.get('mean_dice')}, {stats['wall_seconds']:.0f} s", flush=True)
    return stats


def table_title(bundle: str, rows: list[dict]) -> str:
    """Markdown caption: the bundle, how SAM2 was initialised (random init unless a checkpoint was given), budget."""
    sam2 = {r.get("init") for r in rows if r.get("model") == "sam2"} - {None}
    init = {"random": "random init (no pretrained checkpoint)", "pretrained": "a pretrained checkpoint"}
    init = "SAM2 from " + (" / ".join(init.get(i, i) for i in sorted(sam2)) if sam2 else "n/a")
    epochs = sorted({r.get("max_epochs") for r in rows if r.get("max_epochs")})
    budget = f", {'/'.join(map(str, epochs))} epochs" if epochs else ""
    for key, unit in (("image_size", " px"), ("batch_size", " per batch")):
        values = sorted({r.get("settings", {}).get(key) for r in rows} - {None})
        budget += f", {'/'.join(map(str, values))}{unit}" if values else ""
    return f"**{bundle}: {init}, baselines from scratch{budget}**"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="bundle name, e.g. optic_cup_fundus_sam2")
    p.add_argument("--dataset_dir", default=None, help="dataset in the bundle's layout (default: phantoms in --out)")
    p.add_argument("--out", default=None, help="output folder (default: compare_out/<bundle>)")
    p.add_argument("--models", default=DEFAULT_MODELS,
                   help="comma-separated: sam2:<strategy>[+decoder], resnet, yolo "
                   "(+decoder: train the mask decoder too)")
    p.add_argument("--pretrained_checkpoint", default=None,
                   help="SAM2 checkpoint for the sam2 rows (default: random init)")
    p.add_argument("--tiny", action="store_true", help="configs/cpu_tiny.json for every run (CPU, 64 px)")
    p.add_argument("--max_epochs", type=int, default=None)
    p.add_argument("--image_size", type=int, default=None)
    p.add_argument("--batch_size", type=int, default=None)
    p.add_argument("--num_workers", type=int, default=None)
    p.add_argument("--learning_rate", type=float, default=None,
                   help="one LR for all (default: 1e-3 for baselines and random-init SAM2, "
                   "the bundle's for pretrained SAM2)")
    p.add_argument("--patience", type=int, default=None,
                   help="early_stop_patience for every run (default: the epoch budget, i.e. no early stop)")
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
    csv_path, md_path = write_table(rows, str(out / "comparison.csv"), str(out / "comparison.md"), columns,
                                    title=table_title(args.bundle, rows))
    ok = [r for r in rows if r.get("mean_dice") is not None]
    if ok:
        plot_comparison(ok, PLOT_COLUMNS, str(out / "comparison.png"))
    print(f"\nComparison on {args.bundle} -> {out}\n")
    print(Path(md_path).read_text())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
