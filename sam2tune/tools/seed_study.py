"""Seed study of the abdomen bundle's 3D training: the same setting over several seeds, from random weights.

For each seed s: BTCV phantoms written with seed s, the bundle trained with ``seed s`` (window sampling, prompt
jitter, initialisation), evaluated on the validation volumes, and the untrained network (``torch.manual_seed(s)``)
through the same evaluation. Each organ of each evaluated volume is prompted once on the middle slice of its extent;
"reached both ways" means the prediction overlaps the organ on a slice above and on a slice below that key slice.
Writes <out>/seed_table.{csv,md,json} (per seed: volume Dice per organ, mean, untrained mean, organ-volumes reached
both ways, train seconds, whether the seed passes the 3D Done-when: every organ-volume reached both ways, mean Dice
>= 0.7 and >= untrained + 0.5), the mean +- sd over seeds, and val_curves.png (validation mean Dice of every run).

    python scripts/seed_study.py --setting long --seeds 0,1,2 --out seed_out
    (the same: ``sam2tune-seed-study ...`` or ``python -m sam2tune.tools.seed_study ...``)

Settings (2 CPU cores; random initialisation, no checkpoint can be downloaded):
  long   12 phantoms (10 train, 2 val) at 48 px, image_size 128, 800 steps (20 epochs of 10 volumes x 16 windows of
         4 slices, batch 4), lr 1e-3 with the bundle's cosine decay, no correction rounds: the bundle's Done-when
         setting (tests/bundles/test_abdomen_ct_sam2.py, opt-in on CPU: ~30 min a seed).
  guard  7 phantoms (5 train, 2 val), image_size 64, 40 steps, lr 1e-3 flat: the CI guard (minutes a seed).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import time

import nibabel as nib
import numpy as np
import torch

from sam2tune.bundles import run_workflow
from sam2tune.data.phantoms.btcv import write_btcv_phantoms
from sam2tune.utils import atomic_torch_save, atomic_write_json
from sam2tune.utils.flags import int_list

BUNDLE = "abdomen_ct_sam2"
ORGANS = [1, 2, 3, 6, 7]  # the five large organs: at 48 px the others are below one cell of SAM2's mask
_COMMON = {"sam2_variant": "tiny", "num_workers": 0, "amp": False, "batch_size": 4, "finetune": "decoder_only",
           "learning_rate": 1e-3, "warmup_epochs": 0, "window": 4, "correction_rounds": 0, "early_stop_patience": 100}
# setting -> (phantom writer arguments, training overrides); evaluation takes EVAL_KEYS of the latter
SETTINGS = {
    "long": ({"cases": 12, "size": 48, "depth": 16, "val_fraction": 2 / 12},
             {**_COMMON, "image_size": 128, "max_epochs": 20, "windows_per_volume": 16, "val_interval": 5}),
    "guard": ({"cases": 7, "size": 48, "depth": 16, "val_fraction": 2 / 7},
              {**_COMMON, "image_size": 64, "max_epochs": 4, "windows_per_volume": 8, "val_interval": 2,
               "train#lr_scheduler#t_total": 100000}),
}
EVAL_KEYS = ("sam2_variant", "image_size", "num_workers", "amp", "batch_size", "correction_rounds")
COLUMNS = ["seed", *[f"dice_{o}" for o in ORGANS], "mean_dice", "untrained", "reached_both_ways", "organ_volumes",
           "passes", "train_s"]


def reach_both_ways(eval_dir: str, dataset_dir: str, organs: list[int] = ORGANS) -> dict[str, bool]:
    """Whether each (case, organ) of an evaluation is found above and below its key slice.

    Args:
        eval_dir: an evaluation folder (summary.json and per_slice.csv of ``VolumeReport``).
        dataset_dir: the BTCV phantom root (label/label<id>.nii.gz).
        organs: organ labels to check.

    Returns:
        {"<case>/<organ>": reached}: the key slice is the middle of the organ's labelled extent (the evaluator's
        "middle" prompt); reached = a slice with Dice > 0 lies below it and one above it.
    """
    summary = json.load(open(os.path.join(eval_dir, "summary.json")))
    rows = list(csv.DictReader(open(os.path.join(eval_dir, "per_slice.csv"))))
    reach = {}
    for case in summary["cases"]:
        path = os.path.join(dataset_dir, "label", f"label{case[3:]}.nii.gz")
        label = np.asarray(nib.load(path).dataobj).transpose(2, 1, 0)  # (D, H, W)
        for organ in organs:
            ks = np.nonzero((label == organ).any((1, 2)))[0]
            key = int((ks[0] + ks[-1]) // 2)
            hits = [int(r["slice"]) for r in rows
                    if r["case"] == case and int(r["organ"]) == organ and float(r["dice"]) > 0]
            reach[f"{case}/{organ}"] = bool(hits) and min(hits) < key < max(hits)
    return reach


def run_seed(setting: str, seed: int, out: str) -> dict:
    """Train, evaluate and evaluate the untrained network for one seed -> its table row (+ "reach", "history").

    Args:
        setting: a key of ``SETTINGS``.
        seed: phantom, training and initialisation seed.
        out: folder of this seed's runs (data/, run/, untrained/).

    Returns:
        The row of ``COLUMNS`` plus "reach" ({"<case>/<organ>": bool}) and "history" (the training history records).
    """
    phantom_args, train = SETTINGS[setting]
    data, run, untrained = (os.path.join(out, d) for d in ("data", "run", "untrained"))
    write_btcv_phantoms(data, seed=seed, organs=ORGANS, **phantom_args)
    paths = {"dataset_dir": data, "output_dir": run, "ckpt_dir": os.path.join(run, "models")}
    evaluate = {k: train[k] for k in EVAL_KEYS}
    t0 = time.time()
    run_workflow(BUNDLE, ["train"], seed=seed, **paths, **train)
    train_s = time.time() - t0
    run_workflow(BUNDLE, ["train", "evaluate"], seed=seed, **paths, **evaluate)
    from sam2tune.networks import SAM2Segmenter  # the bundle's network_def at these sizes (1 channel: CT)

    torch.manual_seed(seed)
    init = SAM2Segmenter(train["sam2_variant"], train["image_size"], in_channels=1).state_dict()
    atomic_torch_save(init, os.path.join(untrained, "model.pt"))
    run_workflow(BUNDLE, ["train", "evaluate"], seed=seed, dataset_dir=data, output_dir=untrained,
                 ckpt_dir=untrained, **evaluate)
    trained = json.load(open(os.path.join(run, "eval", "summary.json")))
    base = json.load(open(os.path.join(untrained, "eval", "summary.json")))["mean_dice"]
    reach = reach_both_ways(os.path.join(run, "eval"), data)
    by_id = {o["organ"]: o["volume_dice"] for o in trained["organs"].values()}
    mean = trained["mean_dice"]
    row = {"seed": seed, **{f"dice_{o}": round(by_id.get(o, float("nan")), 4) for o in ORGANS},
           "mean_dice": round(mean, 4), "untrained": round(base, 4), "reached_both_ways": sum(reach.values()),
           "organ_volumes": len(reach), "passes": bool(all(reach.values()) and mean >= 0.7 and mean >= base + 0.5),
           "train_s": round(train_s, 1)}
    history = json.load(open(os.path.join(run, "training_history.json")))
    return {**row, "reach": reach, "history": history}


def spread(rows: list[dict]) -> dict:
    """Mean and sample sd over seeds of every numeric column -> {column: [mean, sd]} (sd 0 for one seed)."""
    out = {}
    for col in COLUMNS[1:]:
        vals = [float(r[col]) for r in rows]  # passes: the share of seeds that pass
        out[col] = [statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0]
    return out


def plot_val_curves(results: list[dict], path: str) -> None:
    """Validation mean Dice vs training step, one line per seed -> PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        pts = [(h["iteration"], h["val_mean_dice"]) for h in r["history"] if "val_mean_dice" in h]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=f"seed {r['seed']}")
    ax.set_xlabel("training step")
    ax.set_ylabel("validation mean Dice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_tables(setting: str, results: list[dict], out: str) -> dict:
    """seed_table.csv / .md / .json and val_curves.png from the per-seed results -> the JSON written."""
    rows = [{k: r[k] for k in COLUMNS} for r in results]
    stats = spread(rows)
    with open(os.path.join(out, "seed_table.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    lines.append("| mean ± sd | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in stats.values()) + " |")
    with open(os.path.join(out, "seed_table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    payload = {"setting": setting, "settings": SETTINGS[setting], "rows": rows, "mean_sd": stats,
               "reach": {r["seed"]: r["reach"] for r in results}}
    atomic_write_json(payload, os.path.join(out, "seed_table.json"))
    plot_val_curves(results, os.path.join(out, "val_curves.png"))
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="long")
    parser.add_argument("--seeds", type=int_list, default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--out", default="seed_study_out")
    args = parser.parse_args(argv)
    seeds = args.seeds
    os.makedirs(args.out, exist_ok=True)
    print(f"Seed study of {BUNDLE}, setting {args.setting!r}, seeds {seeds}: RANDOM INITIALISATION (no checkpoint).")
    results = []
    for seed in seeds:
        r = run_seed(args.setting, seed, os.path.join(args.out, f"seed{seed}"))
        print(json.dumps({k: r[k] for k in COLUMNS}), flush=True)
        results.append(r)
        write_tables(args.setting, results, args.out)  # after every seed: a long study shows what it has
    print(open(os.path.join(args.out, "seed_table.md")).read())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
