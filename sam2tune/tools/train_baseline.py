"""Train and evaluate a baseline (or a SAM2 strategy) with a bundle's own readers, transforms, split and evaluation.

python scripts/train_baseline.py --model resnet|yolo|sam2 --bundle <bundle> --dataset_dir DIR [--out DIR]
       [--tiny] [--max_epochs N] [--image_size PX] [--batch_size N] [--learning_rate LR] [--device cpu|cuda]
       [--prompt box|none] [--backbone resnet18] [--finetune lora] [--set key=json ...]
(the same: ``sam2tune-train-baseline ...`` or ``python -m sam2tune.tools.train_baseline ...``)

The bundle's train.json / evaluate.json run through MONAI's ConfigWorkflow with only network_def, network,
optimizer#params and prepare_batch#prompts overridden, so <out>/eval/summary.json has the bundle's format.
--prompt box (default): the baseline gets SAM2's box prompt rasterised as one extra input channel (same jitter
and drop at training, same exact box at test); none: image only. Writes <out>/run_stats.json too
(trainable params, train images/s, peak memory). --tiny = configs/cpu_tiny.json (64 px, CPU, 2 epochs).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from sam2tune.tools import tiny_settings


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=["resnet", "yolo", "sam2"], help="which network to train")
    p.add_argument("--bundle", required=True, help="bundle whose data, split, budget and metrics are used")
    p.add_argument("--dataset_dir", default=None, help="dataset in the bundle's layout (default: the bundle's own)")
    p.add_argument("--out", default=None, help="output folder (default: baseline_out/<bundle>/<model>)")
    p.add_argument("--tiny", action="store_true", help="apply configs/cpu_tiny.json (CPU, 64 px)")
    p.add_argument("--max_epochs", type=int, default=None)
    p.add_argument("--image_size", type=int, default=None)
    p.add_argument("--batch_size", type=int, default=None)
    p.add_argument("--num_workers", type=int, default=None)
    p.add_argument("--learning_rate", type=float, default=None,
                   help="default: 1e-3 for resnet/yolo (trained from scratch), the bundle's for sam2")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the bundle's)")
    p.add_argument("--prompt", default="box", choices=["box", "none"],
                   help="baseline input: image + box channel, or image only")
    p.add_argument("--backbone", default="resnet18", help="ResNet depth for --model resnet (resnet10..resnet200)")
    p.add_argument("--finetune", default=None,
                   help="SAM2 strategy for --model sam2 (full|decoder_only|lora|adapter|prompt)")
    p.add_argument("--pretrained_checkpoint", default=None, help="SAM2 checkpoint for --model sam2")
    p.add_argument("--name", default=None, help="row name in run_stats.json (default: model / sam2_<strategy>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="any other bundle key, e.g. --set val_interval=1")
    p.add_argument("--no_evaluate", action="store_true", help="train only")
    p.add_argument("--distributed", action="store_true",
                   help="under torchrun: the bundle's multi_gpu_train.json (DDP); rank 0 evaluates afterwards")
    return p


def settings_from_args(args: argparse.Namespace) -> dict:
    """Parsed arguments -> bundle key overrides (explicit flags win over --tiny, --set wins over both)."""
    settings: dict = tiny_settings() if args.tiny else {}
    for key in ("dataset_dir", "max_epochs", "image_size", "batch_size", "num_workers", "learning_rate", "seed",
                "finetune", "pretrained_checkpoint"):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    if args.device:
        settings["device"] = f"$torch.device({args.device!r})"
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --set expects KEY=JSON, got {item!r}")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value  # a bare string such as a path or an '@ref'
    if args.model != "sam2" and (args.finetune or args.pretrained_checkpoint):
        raise SystemExit("error: --finetune/--pretrained_checkpoint apply to --model sam2 only")
    return settings


def main(argv: list[str] | None = None) -> int:
    """Run one model; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from sam2tune.baselines.workflow import train_and_evaluate

    settings = settings_from_args(args)
    out = args.out or str(Path("baseline_out") / args.bundle / (args.name or args.model))
    try:
        stats = train_and_evaluate(args.model, args.bundle, out, settings, prompt=args.prompt, backbone=args.backbone,
                                   evaluate=not args.no_evaluate, name=args.name, distributed=args.distributed)
    except (FileNotFoundError, ImportError, ValueError, NotImplementedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(f"\n{stats['name']} on {args.bundle} -> {Path(out).resolve()}")
    for key in ("mean_dice", "mean_iou", "trainable_params", "train_images_per_s", "peak_memory_mb", "memory_kind"):
        if key in stats:
            print(f"  {key:<20}{stats[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
