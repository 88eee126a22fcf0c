"""LoRA rank ablation (and LoRA vs full fine-tuning) for a bundle, one training run per setting -> one CSV.

python scripts/rank_ablation.py --dataset_dir DIR --output_dir OUT [--ranks 4,8,16] [--strategies lora,full]
                                [--bundle steel_defect_sam2] [--in_process] [-- --key value ...]
(the same: ``sam2tune-rank-ablation ...`` or ``python -m sam2tune.tools.rank_ablation ...``)

Each run is `monai.bundle run training` with --finetune S --lora_r R --lora_alpha 2R, in OUT/<S>_r<R>/; anything
after `--` is passed to every run (e.g. `-- --sam2_variant tiny --image_size 64 --max_epochs 1`). Rows of
OUT/rank_ablation.csv come from each run's training_summary.json plus the wall time, the median step time from
train_log.csv and, for runs in a child process (the default), the child's peak resident memory measured by the OS
(os.wait4).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sam2tune.bundles import bundle_config_files, run_workflow
from sam2tune.utils.flags import int_list

FIELDS = ("strategy", "lora_r", "lora_alpha", "trainable_params", "total_params", "total_steps", "best_step",
          "best_val_iou", "best_val_dice", "seconds", "median_step_seconds", "peak_rss_mb", "peak_cuda_mb",
          "adapter_kb")


def _settings(ranks: list[int], strategies: list[str]) -> list[tuple[str, int]]:
    """(strategy, rank) pairs: every rank for lora, one run for each other strategy (rank unused there)."""
    out = []
    for strategy in strategies:
        out += [(strategy, r) for r in ranks] if strategy == "lora" else [(strategy, ranks[0])]
    return out


def _overrides(extra: list[str]) -> dict[str, str]:
    """['--key', 'value', ...] -> {key: value}; a clear error for anything else."""
    if len(extra) % 2 or any(not k.startswith("--") for k in extra[0::2]):
        raise SystemExit(f"error: arguments after -- must be --key value pairs, got {extra}")
    return {k[2:]: v for k, v in zip(extra[0::2], extra[1::2], strict=True)}


def _run_child(config: str, keys: dict[str, str]) -> tuple[float, float | None]:
    """Run one training in a child process -> (seconds, child's peak RSS in MiB)."""
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", config]
    for k, v in keys.items():
        cmd += [f"--{k}", str(v)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:  # stream the child's progress through, keep the tail for errors
        sys.stdout.write(line)
        lines = (lines + [line])[-60:]
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"training failed ({proc.returncode}): {' '.join(cmd)}\n{''.join(lines)}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def _run_in_process(config: str, keys: dict[str, str]) -> tuple[float, None]:
    """Run one training in this process (tests; no per-run RSS) -> (seconds, None)."""
    # The CLI parses `--key value` as Python literals; JSON covers the numbers, booleans and lists used here.
    parsed = {k: json.loads(v) if _is_json(v) else v for k, v in keys.items()}
    t0 = time.perf_counter()
    run_workflow(Path(config).parents[1], [config], "training", **parsed)
    return time.perf_counter() - t0, None


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def _median_step_seconds(train_log: str) -> float | str:
    """Median forward+backward+optimizer time per step from train_log.csv, first step (warm-up) left out."""
    if not os.path.isfile(train_log):
        return ""
    with open(train_log, newline="") as f:
        times = [float(r["step_seconds"]) for r in csv.DictReader(f) if r.get("step_seconds") not in (None, "", "nan")]
    times = times[1:] if len(times) > 1 else times
    return round(statistics.median(times), 4) if times else ""


def _dir_kb(path: str) -> float | None:
    if not os.path.isdir(path):
        return None
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)) / 1024


def run_ablation(dataset_dir: str, output_dir: str, ranks: list[int], strategies: list[str], bundle: str,
                 extra: dict[str, str], in_process: bool = False) -> list[dict]:
    """Train once per (strategy, rank) and write <output_dir>/rank_ablation.csv -> the rows."""
    try:
        config = bundle_config_files(bundle, ["train"])[0]
    except FileNotFoundError as err:  # BundleRootError too
        raise SystemExit(f"error: {err}") from None
    os.makedirs(output_dir, exist_ok=True)
    rows = []
    for strategy, rank in _settings(ranks, strategies):
        run_dir = os.path.join(output_dir, f"{strategy}_r{rank}" if strategy == "lora" else strategy)
        keys = {"dataset_dir": dataset_dir, "output_dir": run_dir, "ckpt_dir": os.path.join(run_dir, "models"),
                # resume False: a rerun into the same folder must train again, not resume the finished run
                "finetune": strategy, "lora_r": str(rank), "lora_alpha": str(2 * rank), "resume": "False", **extra}
        print(f"=== {strategy} r={rank}: {run_dir}", flush=True)
        seconds, rss = (_run_in_process if in_process else _run_child)(config, keys)
        with open(os.path.join(run_dir, "training_summary.json")) as f:
            s = json.load(f)
        steps = s["total_steps"]
        cuda = s.get("peak_cuda_memory_bytes")
        rows.append({
            "strategy": strategy, "lora_r": rank if strategy == "lora" else "",
            "lora_alpha": 2 * rank if strategy == "lora" else "",
            "trainable_params": s["parameters"]["trainable"], "total_params": s["parameters"]["total"],
            "total_steps": steps, "best_step": s["best_step"], "best_val_iou": s["best_val_iou"],
            "best_val_dice": s["best_val_dice"], "seconds": round(seconds, 2),
            "median_step_seconds": _median_step_seconds(os.path.join(run_dir, "train_log.csv")),
            "peak_rss_mb": round(rss, 1) if rss is not None else "",
            "peak_cuda_mb": round(cuda / 2**20, 1) if cuda else "",
            "adapter_kb": _dir_kb(os.path.join(run_dir, "models", "adapter")) or "",
        })
    path = os.path.join(output_dir, "rank_ablation.csv")
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"Wrote {path}")
    return rows


def main(argv: list[str] | None = None) -> int:
    """Parse arguments (bundle overrides after --), run the ablation, print the CSV path."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True, help="dataset folder (e.g. from make_phantoms.py severstal)")
    parser.add_argument("--output_dir", required=True, help="one sub-folder per run + rank_ablation.csv")
    parser.add_argument("--ranks", type=int_list, default="4,8,16",
                        help="comma-separated LoRA ranks (alpha = 2 x rank)")
    parser.add_argument("--strategies", default="lora", help="comma-separated finetune strategies, e.g. lora,full")
    parser.add_argument("--bundle", default="steel_defect_sam2", help="bundle whose configs/train.json is run")
    parser.add_argument("--in_process", action="store_true", help="run in this process (no per-run peak RSS)")
    args = parser.parse_args(argv)
    ranks = args.ranks
    if not ranks or min(ranks) < 1:
        parser.error(f"--ranks needs at least one rank >= 1, got {args.ranks!r}")
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    run_ablation(args.dataset_dir, args.output_dir, ranks, strategies, args.bundle, _overrides(extra), args.in_process)
    return 0


if __name__ == "__main__":
    sys.exit(main())
