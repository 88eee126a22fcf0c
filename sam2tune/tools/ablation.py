"""Train and evaluate a bundle's ablation settings on one split and seed; write the table and figures of those runs.

python scripts/ablation.py lung_nodule [--preset tiny|small|full] [--dataset_dir DIR] [--out DIR] [--max_epochs N]
                                       [--mc_samples N] [--device cpu|cuda] [--cases N] [--seed S] [--no_untrained]
(the same: ``sam2tune-ablation ...`` or ``python -m sam2tune.tools.ablation ...``)

lung_nodule (bundle lung_nodule_ct_sam2) settings, each trained from scratch on the same split and seed:
  bce                    BCE only
  +dice                  BCE + Dice
  +consistency           BCE + Dice + inter-slice consistency
  +mc_dropout            as +consistency, trained with attention / projection dropout, evaluated with N MC passes

Presets (all fine-tune every component, as the study does; a random-init SAM2 cannot learn through LoRA alone, since
its random mask-decoder heads would stay frozen):
  tiny   (default) 3-6 phantom cases, 32 px, 4 epochs (1 frozen-encoder warm-up), validated once at the end:
         checks the pipeline end to end and that the model leaves its initial state; too short to rank the settings.
  small  14 phantom cases (6 train, 1 val, 7 test), 32 px, 10 epochs (2 warm-up), LR 1e-3, 10 MC passes: a CPU
         run (23 min measured on 2 shared cores) that learns.
  full   (--full) the study setting: 96 px crops at 256 px, 60 epochs, 5 warm-up epochs then cosine, 20 MC passes.
Before the four settings an "untrained" row evaluates the network at initialisation (same seed, no training): the
level a model that never learned scores (probability ~0.5 everywhere, mean entropy ~1 bit); --no_untrained skips it.
Without --dataset_dir, phantoms are written first. Outputs in --out: ablation.csv, ablation.json, ablation.png and per
setting <setting>/{training_history.json, training_curves.png, lr_schedule.png, parameters.png, eval/...}.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shutil
import sys
import time
from pathlib import Path

from sam2tune.bundles import open_workflow, run_workflow

logger = logging.getLogger("ablation")

BUNDLES = {"lung_nodule": "lung_nodule_ct_sam2"}
METRICS = ["mean_dice", "mean_iou", "ece", "uncertainty_auroc"]
UNTRAINED = "untrained"
_NO_DROPOUT = {"attn_dropout": 0.0, "proj_dropout": 0.0, "dropout": 0.0}
SETTINGS = {
    "bce": {"loss_weights": {"bce": 1.0, "dice": 0.0, "consistency": 0.0}, **_NO_DROPOUT, "mc": False},
    "+dice": {"loss_weights": {"bce": 1.0, "dice": 1.0, "consistency": 0.0}, **_NO_DROPOUT, "mc": False},
    "+consistency": {"loss_weights": {"bce": 1.0, "dice": 1.0, "consistency": 0.1}, **_NO_DROPOUT, "mc": False},
    "+mc_dropout": {"loss_weights": {"bce": 1.0, "dice": 1.0, "consistency": 0.1}, "attn_dropout": 0.1,
                    "proj_dropout": 0.1, "dropout": 0.0, "mc": True},
}
# The bundle's LR (1e-4) is meant for pretrained weights; from random init a few CPU steps need 1e-3 to move.
# tiny validates only at its last epoch, so the evaluated model is the final one: with best-val-Dice selection a run
# this short keeps its first epoch, whose p ~ 0.5-everywhere output scores Dice ~0.2 on a nodule-centred crop.
TINY = {"sam2_variant": "tiny", "image_size": 32, "crop_size": [32, 32], "adjacent_slices": 1, "max_epochs": 4,
        "warmup_epochs": 1, "batch_size": 2, "num_workers": 0, "amp": False, "finetune": "full", "cache_rate": 1.0,
        "val_interval": 4, "learning_rate": 1e-3}
# Training cost grows with the train cases, evaluation is cheap: half the cases go to test so the table averages over
# ~10 nodules, one case to validation (model selection), 6 to training (3 steps per epoch).
SMALL = {**TINY, "max_epochs": 10, "warmup_epochs": 2, "val_interval": 1, "val_fraction": 0.1, "test_fraction": 0.5}
FULL = {"sam2_variant": "tiny", "image_size": 256, "crop_size": [96, 96], "adjacent_slices": 1, "max_epochs": 60,
        "warmup_epochs": 5, "batch_size": 4, "num_workers": 4, "finetune": "full", "cache_rate": 1.0}
PRESETS = {"tiny": TINY, "small": SMALL, "full": FULL}
MC_SAMPLES = {"tiny": 4, "small": 10, "full": 20}
PHANTOMS = {"tiny": {"cases": 6, "size": 48, "slices": 16}, "small": {"cases": 14, "size": 48, "slices": 16},
            "full": {"cases": 40, "size": 128, "slices": 48}}


def unfreeze_epoch(history: list[dict]) -> int | None:
    """First epoch whose record says encoder_trainable after an epoch that said it was frozen (None if never)."""
    for prev, rec in zip(history, history[1:], strict=False):
        if not prev.get("encoder_trainable", True) and rec.get("encoder_trainable"):
            return int(rec["epoch"])
    return None


def run_setting(bundle: str, name: str, setting: dict, base: dict, out: Path, mc_samples: int) -> dict:
    """Train + evaluate one setting into out/<name>/ -> its row of the table (numbers read from its summary.json)."""
    from sam2tune.finetune import count_parameters
    from sam2tune.plots.ablation import plot_lr_schedule, plot_parameter_counts
    from sam2tune.plots.curves import plot_training_history

    run_dir = out / name.strip("+")
    shutil.rmtree(run_dir, ignore_errors=True)  # every setting trains from scratch
    override = {**base, **{k: v for k, v in setting.items() if k != "mc"}, "output_dir": str(run_dir),
                "ckpt_dir": str(run_dir / "models"), "resume": False}
    t0 = time.perf_counter()
    logger.info("=== %s: training", name)
    wf = run_workflow(bundle, ["train"], **override)
    counts = count_parameters(wf.parser.get_parsed_content("network"))
    train_s = time.perf_counter() - t0
    logger.info("=== %s: evaluating", name)
    run_workflow(bundle, ["train", "evaluate"], **override, mc_samples=mc_samples if setting["mc"] else 1)
    summary = json.loads((run_dir / "eval" / "summary.json").read_text())
    history_path = run_dir / "training_history.json"
    history = json.loads(history_path.read_text())
    epoch = unfreeze_epoch(history)
    markers = {"encoder unfrozen": epoch} if epoch else {}
    plot_training_history(str(history_path), str(run_dir / "training_curves.png"), markers=markers)
    plot_lr_schedule(str(history_path), str(run_dir / "lr_schedule.png"), markers=markers)
    plot_parameter_counts(counts, str(run_dir / "parameters.png"), title=f"{name}: parameters after training")
    return {"setting": name, **{m: summary.get(m) for m in METRICS}, "n_nodules": summary["n"],
            "empty_predictions": summary["empty_predictions"], "mean_uncertainty": summary.get("mean_uncertainty"),
            "mc_samples": summary.get("mc_samples"),
            "epochs": len(history), "encoder_unfrozen_epoch": epoch, "trainable_parameters": counts["total"][0],
            "total_parameters": counts["total"][1], "train_seconds": round(train_s, 1),
            "seconds": round(time.perf_counter() - t0, 1)}


def run_untrained(bundle: str, base: dict, out: Path) -> dict:
    """Evaluate the network as built (same seed, no training step) into out/untrained/ -> its row of the table."""
    import torch

    from sam2tune.finetune import count_parameters, merged_state_dict

    run_dir = out / UNTRAINED
    shutil.rmtree(run_dir, ignore_errors=True)
    override = {**base, **_NO_DROPOUT, "output_dir": str(run_dir), "ckpt_dir": str(run_dir / "models"), "resume": False}
    t0 = time.perf_counter()
    logger.info("=== %s: evaluating the network at initialisation", UNTRAINED)
    # initialize runs the config's `initialize` (set_determinism(seed)) before the network is built; never run
    with open_workflow(bundle, ["train"], **override) as wf:
        network = wf.parser.get_parsed_content("network")
        (run_dir / "models").mkdir(parents=True, exist_ok=True)
        torch.save(merged_state_dict(network), run_dir / "models" / "model.pt")
        counts = count_parameters(network)
    run_workflow(bundle, ["train", "evaluate"], **override, mc_samples=1)
    summary = json.loads((run_dir / "eval" / "summary.json").read_text())
    return {"setting": UNTRAINED, **{m: summary.get(m) for m in METRICS}, "n_nodules": summary["n"],
            "empty_predictions": summary["empty_predictions"], "mean_uncertainty": summary.get("mean_uncertainty"),
            "mc_samples": summary.get("mc_samples"), "epochs": 0, "encoder_unfrozen_epoch": None,
            "trainable_parameters": counts["total"][0], "total_parameters": counts["total"][1], "train_seconds": 0.0,
            "seconds": round(time.perf_counter() - t0, 1)}


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=list(BUNDLES), help="which bundle's ablation to run")
    p.add_argument("--dataset_dir", default=None,
                   help="dataset in the bundle's layout (default: write phantoms into --out)")
    p.add_argument("--out", default="ablation_out", help="output folder (default: ./ablation_out)")
    p.add_argument("--preset", choices=list(PRESETS), default="tiny", help="tiny CPU check (default), small CPU run "
                   "that learns, or the full study setting")
    p.add_argument("--full", action="store_true", help="same as --preset full")
    p.add_argument("--no_untrained", action="store_true", help="skip the untrained reference row")
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated subset of {','.join(SETTINGS)}")
    p.add_argument("--max_epochs", type=int, default=None, help="override the setting's epochs")
    p.add_argument("--mc_samples", type=int, default=None, help="MC-dropout passes of the +mc_dropout setting")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--cases", type=int, default=None, help="phantom cases when no --dataset_dir")
    p.add_argument("--seed", type=int, default=0, help="training seed and split seed, the same for every setting")
    p.add_argument("--pretrained_checkpoint", default=None, help="official SAM2.1 checkpoint (default: random init)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the ablation; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    mode = "full" if args.full else args.preset
    names = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in names if s not in SETTINGS]
    if unknown:
        print(f"error: unknown settings {unknown}; choose among {', '.join(SETTINGS)}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    dataset_dir = args.dataset_dir
    if dataset_dir is None:
        from sam2tune.data.phantoms import write_phantoms

        kw = dict(PHANTOMS[mode])
        kw["cases"] = args.cases or kw["cases"]
        dataset_dir = write_phantoms(args.task, str(out / "phantoms"), seed=args.seed, **kw)["root"]
    base = dict(PRESETS[mode])
    base.update({"dataset_dir": str(dataset_dir), "seed": args.seed, "split_seed": args.seed,
                 "pretrained_checkpoint": args.pretrained_checkpoint})
    if args.max_epochs is not None:
        base["max_epochs"] = args.max_epochs
    if args.device:
        base["device"] = f"$torch.device('{args.device}')"
    mc_samples = args.mc_samples or MC_SAMPLES[mode]
    rows = [] if args.no_untrained else [run_untrained(BUNDLES[args.task], base, out)]
    rows += [run_setting(BUNDLES[args.task], n, SETTINGS[n], base, out, mc_samples) for n in names]

    from sam2tune.plots.ablation import plot_ablation_bars
    from sam2tune.utils.atomic import atomic_write_json

    with open(out / "ablation.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    plot_ablation_bars(rows, METRICS, str(out / "ablation.png"))
    atomic_write_json({"task": args.task, "bundle": BUNDLES[args.task], "mode": mode, "dataset_dir": str(dataset_dir),
                       "overrides": base, "mc_samples": mc_samples, "settings": {n: SETTINGS[n] for n in names},
                       "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
                       "rows": rows}, str(out / "ablation.json"))
    print(f"\nAblation ({mode}, {args.task}) -> {out}")
    cols = [*METRICS, "mean_uncertainty"]
    print(f"{'setting':<16}" + "".join(f"{m:>20}" for m in cols) + f"{'empty_predictions':>20}")
    for r in rows:
        print(f"{r['setting']:<16}" + "".join(f"{r[m]:>20.4f}" if r[m] is not None else f"{'n/a':>20}" for m in cols)
              + f"{r['empty_predictions']:>20}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
