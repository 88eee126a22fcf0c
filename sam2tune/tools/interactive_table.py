"""Clicks-to-accuracy table for a 2D bundle: untrained vs box-only fine-tune vs fine-tune with corrective clicks.

For each seed: phantoms (that seed) -> train box-only (``correction_rounds 0``, ``first_prompt box``), with
``correction_rounds R`` (box first) and with ``correction_rounds R`` + ``first_prompt mixed`` (same data, steps,
seed) -> the bundle's click protocol (train.json + evaluate.json + evaluate_interactive.json) on its test split,
plus the untrained network through the same protocol. Writes <out>/interactive_table.{csv,md} and one clicks_curve.png
per seed, every number from these runs. Random initialisation (no checkpoint can be downloaded).

    python scripts/interactive_table.py --bundle optic_cup_fundus_sam2 --seeds 0,1 --out interactive_out
    (the same: ``sam2tune-interactive-table ...`` or ``python -m sam2tune.tools.interactive_table ...``)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import time

import torch

from sam2tune.bundles import run_workflow
from sam2tune.data.phantoms import write_phantoms
from sam2tune.networks import SAM2Segmenter
from sam2tune.plots.clicks import plot_click_curves
from sam2tune.utils import atomic_torch_save, atomic_write_json

PHANTOMS = {"optic_cup_fundus_sam2": ("refuge", {"size": 96}), "steel_defect_sam2": ("severstal", {}),
            "knee_cartilage_mri_sam2": ("knee", {})}
COLUMNS = ["seed", "model", "dice_first", "dice_1", "dice_3", "dice_5", "noc_85", "noc_90", "nof_90", "objects",
           "train_s"]


def row(seed: int, model: str, summary: dict, train_s: float) -> dict:
    """One table row from a click-protocol summary.json."""
    d = summary["dice_at_clicks"]
    return {"seed": seed, "model": model, "dice_first": d[0], "dice_1": d[1], "dice_3": d[3], "dice_5": d[5],
            "noc_85": summary["noc_85"], "noc_90": summary["noc_90"], "nof_90": summary["nof_90"],
            "objects": summary["objects"], "train_s": round(train_s, 1)}


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and write the table.

    Args:
        argv: command-line arguments (default: sys.argv[1:]).

    Returns:
        The exit status.
    """
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default="optic_cup_fundus_sam2", choices=sorted(PHANTOMS))
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--cases", type=int, default=40)
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3, help="correction_rounds of the corrections run")
    p.add_argument("--max_clicks", type=int, default=20)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--finetune", default="full")
    p.add_argument("--out", default="interactive_out")
    args = p.parse_args(argv)
    if args.max_clicks < 5:
        p.error("--max_clicks must be >= 5 (the table reports Dice after 5 clicks).")
    out = os.path.abspath(args.out)
    task, kwargs = PHANTOMS[args.bundle]
    tiny = {"sam2_variant": "tiny", "image_size": args.image_size, "num_workers": 0, "batch_size": 4, "amp": False,
            "device": "$torch.device('cpu')", "max_clicks": args.max_clicks}
    rows = []
    for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
        data = os.path.join(out, f"seed{seed}", "phantoms")
        write_phantoms(task, data, cases=args.cases, seed=seed, **kwargs)
        curves = {}
        untrained = os.path.join(out, f"seed{seed}", "untrained")
        torch.manual_seed(seed)
        atomic_torch_save(SAM2Segmenter("tiny", args.image_size, num_prompt_tokens=1).state_dict(),
                          os.path.join(untrained, "model.pt"))
        run_workflow(args.bundle, ["train", "evaluate", "evaluate_interactive"], dataset_dir=data,
                     output_dir=untrained, ckpt_dir=untrained, seed=seed, **tiny)
        s = json.load(open(os.path.join(untrained, "eval_interactive", "summary.json")))
        rows.append(row(seed, "untrained", s, 0.0))
        curves["untrained"] = s["dice_at_clicks"]
        variants = (("box only (correction_rounds 0, first_prompt box)", 0, "box"),
                    (f"corrections (correction_rounds {args.rounds}, first_prompt box)", args.rounds, "box"),
                    (f"corrections (correction_rounds {args.rounds}, first_prompt mixed)", args.rounds, "mixed"))
        for name, rounds, first in variants:
            run_dir = os.path.join(out, f"seed{seed}", f"rounds{rounds}_{first}")
            common = dict(dataset_dir=data, output_dir=run_dir, ckpt_dir=run_dir, seed=seed, **tiny)
            t0 = time.perf_counter()
            run_workflow(args.bundle, ["train"], finetune=args.finetune, max_epochs=args.epochs,
                         learning_rate=args.learning_rate, resume=False, correction_rounds=rounds, first_prompt=first,
                         **common)
            train_s = time.perf_counter() - t0
            run_workflow(args.bundle, ["train", "evaluate", "evaluate_interactive"], **common)
            s = json.load(open(os.path.join(run_dir, "eval_interactive", "summary.json")))
            rows.append(row(seed, name, s, train_s))
            curves[name] = s["dice_at_clicks"]
        plot_click_curves(curves, os.path.join(out, f"seed{seed}", "clicks_curve.png"))
    atomic_write_json({"args": vars(args), "rows": rows}, os.path.join(out, "interactive_table.json"))
    with open(os.path.join(out, "interactive_table.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| seed | model | Dice first prompt | Dice 1 click | Dice 3 clicks | Dice 5 clicks | NoC@85 | NoC@90 | "
             "NoF@90 | objects | train s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['model']} | {r['dice_first']:.3f} | {r['dice_1']:.3f} | {r['dice_3']:.3f} | "
                     f"{r['dice_5']:.3f} | {r['noc_85']:.2f} | {r['noc_90']:.2f} | {r['nof_90']} | {r['objects']} | "
                     f"{r['train_s']} |")
    for model in dict.fromkeys(r["model"] for r in rows):
        sel = [r for r in rows if r["model"] == model]
        if len(sel) > 1:
            mean = {k: statistics.mean(r[k] for r in sel) for k in ("dice_first", "dice_5", "noc_90")}
            sd = {k: statistics.stdev(r[k] for r in sel) for k in mean}
            lines.append(f"| mean ± sd | {model} | {mean['dice_first']:.3f} ± {sd['dice_first']:.3f} | | | "
                         f"{mean['dice_5']:.3f} ± {sd['dice_5']:.3f} | | {mean['noc_90']:.2f} ± {sd['noc_90']:.2f} "
                         "| | | |")
    with open(os.path.join(out, "interactive_table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
