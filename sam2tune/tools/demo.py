"""`make demo`: phantoms -> fine-tune SAM2 (LoRA and full) -> evaluate -> report, on one CPU in a few minutes.

Every number in the report comes from the runs this script makes. The model starts from RANDOM weights (no
checkpoint can be downloaded here), so the demo shows that the pipeline learns, not SAM2's pretrained quality.

python scripts/demo.py [--out DIR] [--cases N] [--image_size PX] [--epochs N] [--strategies lora,full]
                       [--learning_rate LR]
(the same: ``sam2tune-demo ...`` or ``python -m sam2tune.tools.demo ...``; run from the checkout root, where
``./bundles/optic_cup_fundus_sam2`` is, or set ``$SAM2TUNE_BUNDLES``)
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from monai.bundle import run

from sam2tune.bundles import bundle_config_files
from sam2tune.data.phantoms import write_phantoms
from sam2tune.finetune import apply_finetune, count_parameters
from sam2tune.networks import SAM2Segmenter
from sam2tune.utils import atomic_torch_save, atomic_write_json

BUNDLE = "optic_cup_fundus_sam2"


def configs(*names: str) -> list[str]:
    """Config file paths of the demo bundle."""
    return bundle_config_files(BUNDLE, names)


def show(cmd: str) -> None:
    """Print the equivalent contract command, so users can rerun each step by hand."""
    print(f"\n$ {cmd}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the demo and write <out>/report.md + report.json.

    Args:
        argv: --out, --cases, --image_size, --epochs, --strategies, --learning_rate (default: the command line).

    Returns:
        0 once the report is written (a failed step raises).
    """
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_out")
    p.add_argument("--cases", type=int, default=40)
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--strategies", default="lora,full")
    p.add_argument("--learning_rate", type=float, default=1e-3)
    args = p.parse_args(argv)
    logging_conf = os.path.join(os.path.dirname(configs("train")[0]), "logging.conf")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    out = os.path.abspath(args.out)
    data = os.path.join(out, "phantoms")
    tiny = {"sam2_variant": "tiny", "image_size": args.image_size, "num_workers": 0, "batch_size": 4, "amp": False}
    report: dict = {"bundle": BUNDLE, "image_size": args.image_size, "epochs": args.epochs, "pretrained": None,
                    "rows": []}

    show(f"python scripts/make_phantoms.py refuge --out {data} --cases {args.cases} --size 96")
    write_phantoms("refuge", data, cases=args.cases, seed=0, size=96)

    # The untrained reference: the same network, random weights, evaluated by the same evaluate.json.
    untrained = os.path.join(out, "untrained")
    atomic_torch_save(SAM2Segmenter("tiny", args.image_size, num_prompt_tokens=1).state_dict(),
                      os.path.join(untrained, "models", "model.pt"))
    run("evaluating", config_file=configs("train", "evaluate"), logging_file=logging_conf,
        dataset_dir=data, output_dir=untrained, ckpt_dir=os.path.join(untrained, "models"), **tiny)
    base = json.load(open(os.path.join(untrained, "eval", "summary.json")))
    report["rows"].append({"strategy": "untrained (random init)", "trainable_params": 0, "train_seconds": 0.0,
                           "test_dice": base["mean_dice"], "test_iou": base["mean_iou"],
                           "report": os.path.join(untrained, "eval")})

    for strategy in [s for s in args.strategies.split(",") if s]:
        run_dir = os.path.join(out, strategy)
        ckpt = os.path.join(run_dir, "models")
        common = dict(dataset_dir=data, output_dir=run_dir, ckpt_dir=ckpt, **tiny)
        show(f"python -m monai.bundle run training --config_file {configs('train')[0]} --dataset_dir {data} "
             + ("--finetune_settings#train_mask_decoder true " if strategy == "lora" else "")
             + f"--finetune {strategy} --max_epochs {args.epochs} --learning_rate {args.learning_rate} "
             f"--image_size {args.image_size} "
             f"--output_dir {run_dir} --ckpt_dir {ckpt} --num_workers 0 --batch_size 4")
        # From RANDOM weights a frozen random mask decoder cannot be steered by low-rank updates in a few dozen
        # steps, so the demo's LoRA run also trains the mask decoder (as SAMed-style medical LoRA does); with official
        # weights the bundle default (LoRA only) is the usual choice.
        extra = {"finetune_settings#train_mask_decoder": True} if strategy == "lora" else {}
        t0 = time.perf_counter()
        run("training", config_file=configs("train"), logging_file=logging_conf,
            finetune=strategy, max_epochs=args.epochs, learning_rate=args.learning_rate, resume=False, **common,
            **extra)
        seconds = time.perf_counter() - t0
        show(f"python -m monai.bundle run evaluating --config_file \"{configs('train', 'evaluate')}\" "
             f"--dataset_dir {data} "
             f"--output_dir {run_dir} --ckpt_dir {ckpt} --image_size {args.image_size}")
        run("evaluating", config_file=configs("train", "evaluate"), logging_file=logging_conf, **common)
        summary = json.load(open(os.path.join(run_dir, "eval", "summary.json")))
        settings = {"strategy": strategy, **({"train_mask_decoder": True} if extra else {})}
        net = apply_finetune(SAM2Segmenter("tiny", args.image_size, num_prompt_tokens=1), settings)
        trainable = count_parameters(net)["total"][0]
        report["rows"].append({"strategy": strategy + (" (+ trainable mask decoder)" if extra else ""),
                               "trainable_params": trainable, "train_seconds": round(seconds, 1),
                               "test_dice": summary["mean_dice"], "test_iou": summary["mean_iou"],
                               "curves": os.path.join(run_dir, "training_curves.png"),
                               "report": os.path.join(run_dir, "eval")})

    # A real photograph: scikit-image's 1411x1411 fundus image, through `run inferring` with the first strategy.
    import skimage

    first = [s for s in args.strategies.split(",") if s][0]
    photo = os.path.join(os.path.dirname(skimage.__file__), "data", "retina.jpg")
    masks = os.path.join(out, "retina_inference")
    show(f"python -m monai.bundle run inferring --config_file {configs('inference')[0]} --input_path {photo} "
         f"--output_dir {masks} --ckpt_dir {os.path.join(out, first, 'models')} --image_size {args.image_size}")
    run("inferring", config_file=configs("inference"), logging_file=logging_conf,
        input_path=photo, output_dir=masks, ckpt_dir=os.path.join(out, first, "models"), image_size=args.image_size)
    report["retina_mask"] = os.path.join(masks, "retina_mask.png")

    atomic_write_json(report, os.path.join(out, "report.json"))
    lines = ["# sam2tune demo report", "", f"Bundle `{BUNDLE}`, SAM2.1 hiera-tiny at {args.image_size} px, "
             f"{args.epochs} epochs, **random initialisation** (no pretrained checkpoint), REFUGE-layout phantoms.", "",
             "| model | trainable params | train s | test Dice | test IoU |", "|---|---|---|---|---|"]
    lines += [f"| {r['strategy']} | {r['trainable_params']:,} | {r['train_seconds']} | {r['test_dice']:.3f} | "
              f"{r['test_iou']:.3f} |" for r in report["rows"]]
    lines += ["", "Curves: " + ", ".join(r["curves"] for r in report["rows"] if "curves" in r),
              "QC overlays: " + ", ".join(os.path.join(r["report"], "qc") for r in report["rows"]),
              f"Real fundus photo (scikit-image retina.jpg) mask: {report['retina_mask']}"]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))
    print(f"\nReport: {os.path.join(out, 'report.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
