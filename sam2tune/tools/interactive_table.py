"""Clicks-to-accuracy table for a bundle: untrained vs box-only fine-tune vs fine-tune with corrective clicks.

For each seed: phantoms (that seed) -> train box-only (``correction_rounds 0``), with ``correction_rounds R`` (first
prompt: the bundle's own) and, for the bundles whose first prompt can be a click (optic cup, steel, knee), with
``correction_rounds R`` + ``first_prompt mixed`` (same data, steps, seed) -> the bundle's click protocol
(train.json + evaluate.json + evaluate_interactive.json) on its test split, plus the untrained network (the bundle's
own ``network_def``, seeded) through the same protocol. Then, for the 2D bundles, the last fine-tune again with the
simulated user who clicks where the app suggests (``click_user suggest``) and with one who clicks a random pixel of
the predicted border (``boundary``), beside the error-centre oracle. Writes <out>/interactive_table.{csv,md,json},
<out>/click_users.{csv,md} and one clicks_curve.png per seed, every number from these runs. Random initialisation
(no checkpoint can be downloaded).

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
from sam2tune.plots.clicks import plot_click_curves
from sam2tune.utils import atomic_torch_save, atomic_write_json

# bundle -> (phantom task, its writer's arguments, training overrides of the runs, first prompt may be a click)
BUNDLES = {
    "optic_cup_fundus_sam2": ("refuge", {"size": 96}, {}, True),
    "steel_defect_sam2": ("severstal", {}, {}, True),
    "knee_cartilage_mri_sam2": ("knee", {}, {}, True),
    "lung_nodule_ct_sam2": ("lung_nodule", {}, {}, False),
    # the abdomen CI setting (tests/bundles/test_abdomen_ct_sam2.py): five large organs at 48 px, 4-slice windows,
    # decoder + memory modules, lr held flat
    "abdomen_ct_sam2": ("btcv", {"size": 48, "depth": 12, "organs": [1, 2, 3, 6, 7], "val_fraction": 0.2},
                        {"window": 4, "windows_per_volume": 20, "warmup_epochs": 0,
                         "train#lr_scheduler#t_total": 10000}, False),
}
COLUMNS = ["seed", "model", "dice_first", "dice_1", "dice_3", "dice_5", "noc_85", "noc_90", "nof_90", "objects",
           "train_s"]
USER_COLUMNS = ["seed", "user", "needs_truth", "dice_first", "dice_5", "noc_85", "noc_90", "nof_85", "clicks_in_error",
                "objects"]
USERS = (("oracle", "yes: clicks the centre of the largest error region"),
         ("suggest", "no: clicks where the app suggests (the label is read from the truth there)"),
         ("boundary", "no: clicks a random pixel of the predicted border (the label is read from the truth there)"))


def row(seed: int, model: str, summary: dict, train_s: float) -> dict:
    """One table row from a click-protocol summary.json."""
    d = summary["dice_at_clicks"]
    return {"seed": seed, "model": model, "dice_first": d[0], "dice_1": d[1], "dice_3": d[3], "dice_5": d[5],
            "noc_85": summary["noc_85"], "noc_90": summary["noc_90"], "nof_90": summary["nof_90"],
            "objects": summary["objects"], "train_s": round(train_s, 1)}


def user_row(seed: int, user: str, needs_truth: str, summary: dict) -> dict:
    """One row of the click-user table from a click-protocol summary.json."""
    d = summary["dice_at_clicks"]
    return {"seed": seed, "user": user, "needs_truth": needs_truth, "dice_first": d[0], "dice_5": d[5],
            "noc_85": summary["noc_85"], "noc_90": summary["noc_90"], "nof_85": summary["nof_85"],
            "clicks_in_error": summary.get("clicks_in_error"), "objects": summary["objects"]}


def _write_csv(path: str, columns: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)


def _summary(run_dir: str) -> dict:
    with open(os.path.join(run_dir, "eval_interactive", "summary.json")) as f:
        return json.load(f)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and write the tables.

    Args:
        argv: command-line arguments (default: sys.argv[1:]).

    Returns:
        The exit status.
    """
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default="optic_cup_fundus_sam2", choices=sorted(BUNDLES))
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--cases", type=int, default=None, help="phantom cases (default: 40 in 2D, 5 volumes in 3D)")
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3, help="correction_rounds of the corrections run")
    p.add_argument("--max_clicks", type=int, default=20)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--finetune", default=None, help="strategy (default: full in 2D, decoder_only in 3D)")
    p.add_argument("--users", default="oracle,suggest,boundary",
                   help="simulated users compared on the last fine-tune (2D bundles); empty: none")
    p.add_argument("--out", default="interactive_out")
    args = p.parse_args(argv)
    if args.max_clicks < 5:
        p.error("--max_clicks must be >= 5 (the table reports Dice after 5 clicks).")
    users = [u for u in args.users.split(",") if u.strip()]
    if any(u not in dict(USERS) for u in users):
        p.error(f"--users takes a comma list of {', '.join(dict(USERS))}, got {args.users!r}.")
    task, phantom_kwargs, train_overrides, click_first = BUNDLES[args.bundle]
    three_d = task == "btcv"
    cases = args.cases or (5 if three_d else 40)
    finetune = args.finetune or ("decoder_only" if three_d else "full")
    out = os.path.abspath(args.out)
    tiny = {"sam2_variant": "tiny", "image_size": args.image_size, "num_workers": 0, "batch_size": 4, "amp": False,
            "device": "$torch.device('cpu')", "max_clicks": args.max_clicks}
    rows, user_rows = [], []
    for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
        data = os.path.join(out, f"seed{seed}", "phantoms")
        write_phantoms(task, data, cases=cases, seed=seed, **phantom_kwargs)
        curves = {}
        untrained = os.path.join(out, f"seed{seed}", "untrained")
        common = dict(dataset_dir=data, output_dir=untrained, ckpt_dir=untrained, seed=seed, **tiny)
        torch.manual_seed(seed)
        wf = run_workflow(args.bundle, ["train"], run=False, **common)  # the bundle's own network_def
        atomic_torch_save(wf.parser.get_parsed_content("network_def").state_dict(),
                          os.path.join(untrained, "model.pt"))
        run_workflow(args.bundle, ["train", "evaluate", "evaluate_interactive"], **common)
        s = _summary(untrained)
        rows.append(row(seed, "untrained", s, 0.0))
        curves["untrained"] = s["dice_at_clicks"]
        variants = [("box only (correction_rounds 0)", 0, None),
                    (f"corrections (correction_rounds {args.rounds})", args.rounds, None)]
        if click_first:
            variants = [("box only (correction_rounds 0, first_prompt box)", 0, "box"),
                        (f"corrections (correction_rounds {args.rounds}, first_prompt box)", args.rounds, "box"),
                        (f"corrections (correction_rounds {args.rounds}, first_prompt mixed)", args.rounds, "mixed")]
        for name, rounds, first in variants:
            run_dir = os.path.join(out, f"seed{seed}", f"rounds{rounds}_{first or 'own'}")
            common = dict(dataset_dir=data, output_dir=run_dir, ckpt_dir=run_dir, seed=seed, **tiny)
            prompt = {} if first is None else {"first_prompt": first}
            t0 = time.perf_counter()
            run_workflow(args.bundle, ["train"], finetune=finetune, max_epochs=args.epochs,
                         learning_rate=args.learning_rate, resume=False, correction_rounds=rounds, **prompt,
                         **train_overrides, **common)
            train_s = time.perf_counter() - t0
            run_workflow(args.bundle, ["train", "evaluate", "evaluate_interactive"], **common)
            s = _summary(run_dir)
            rows.append(row(seed, name, s, train_s))
            curves[name] = s["dice_at_clicks"]
        plot_click_curves(curves, os.path.join(out, f"seed{seed}", "clicks_curve.png"))
        for user in users if not three_d else ():  # the 3D protocol has the oracle only
            user_dir = run_dir if user == "oracle" else os.path.join(run_dir, f"user_{user}")  # oracle: ran above
            if user != "oracle":
                run_workflow(args.bundle, ["train", "evaluate", "evaluate_interactive"], **{
                    **common, "output_dir": user_dir, "click_user": user})
            user_rows.append(user_row(seed, user, dict(USERS)[user], _summary(user_dir)))
    atomic_write_json({"args": vars(args), "rows": rows, "users": user_rows},
                      os.path.join(out, "interactive_table.json"))
    _write_csv(os.path.join(out, "interactive_table.csv"), COLUMNS, rows)
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
    if user_rows:
        _write_csv(os.path.join(out, "click_users.csv"), USER_COLUMNS, user_rows)
        lines += ["", f"Simulated users on the last fine-tune ({variants[-1][0]}):", "",
                  "| seed | user | needs the truth to place the click | Dice first prompt | Dice 5 clicks | NoC@85 | "
                  "NoC@90 | NoF@85 | clicks on a wrong pixel | objects |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in user_rows:
            share = "" if r["clicks_in_error"] is None else f"{r['clicks_in_error']:.3f}"
            lines.append(f"| {r['seed']} | {r['user']} | {r['needs_truth']} | {r['dice_first']:.3f} | "
                         f"{r['dice_5']:.3f} | {r['noc_85']:.2f} | {r['noc_90']:.2f} | {r['nof_85']} | {share} | "
                         f"{r['objects']} |")
    with open(os.path.join(out, "interactive_table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
