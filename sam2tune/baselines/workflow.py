"""Train + evaluate any model (SAM2 strategy or baseline) through a bundle's own train.json / evaluate.json.

The baseline swaps only `network_def`, `network`, `optimizer#params` and `prepare_batch#prompts` by override: the
readers, transforms, split, loss, schedule, handlers and the evaluation report are the bundle's, so the
summary.json of every model has the same format and was computed by the same code on the same test images.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import ignite.distributed as idist
import torch
from monai.bundle import ConfigParser

from sam2tune.bundles import bundle_config_files, open_workflow, run_workflow
from sam2tune.utils.atomic import atomic_write_json
from sam2tune.utils.dist import unwrap

logger = logging.getLogger(__name__)
MODELS = ("sam2", "resnet", "yolo")
PROMPTS = ("box", "none")
# Learning rate each model family is usually trained with when the caller gives none (SAM2: the bundle's own).
DEFAULT_LR = {"resnet": 1e-3, "yolo": 1e-3}


def bundle_value(bundle: str, key: str, default=None):
    """Raw (unresolved) value of `key` in the bundle's train.json ('@x' references stay references)."""
    parser = ConfigParser()
    parser.read_config(bundle_config_files(bundle, ["train"])[0])
    return parser.get(key, default)


def model_overrides(model: str, bundle: str, prompt: str = "box", backbone: str = "resnet18",
                    evaluate: bool = False, distributed: bool = False) -> dict:
    """ConfigWorkflow overrides that put `model` into the bundle (empty for sam2: the bundle's own network)."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}.")
    if prompt not in PROMPTS:
        raise ValueError(f"prompt must be one of {PROMPTS}, got {prompt!r}.")
    if model == "sam2":
        return {}
    if model == "yolo":
        from sam2tune.baselines.yolo import yolo_overrides  # optional dependency, imported only when asked

        return yolo_overrides(bundle, prompt=prompt, evaluate=evaluate, distributed=distributed)
    network_def = {
        "_target_": "sam2tune.baselines.ResNetUNet",
        "image_size": "@image_size",
        # the bundle's own input channels (a raw '@ref' keeps pointing at the bundle's key)
        "in_channels": bundle_value(bundle, "network_def#in_channels", 3),
        "out_channels": 1,
        "backbone": backbone,
        "prompt_channel": prompt == "box",
        "dropout": 0.0,
        "pretrained_checkpoint": "$@ckpt_dir + '/model.pt'" if evaluate else None,
    }
    over = {"network_def": network_def, "prepare_batch#prompts": ["boxes"] if prompt == "box" else []}
    if distributed:
        over["network#module"] = "$@network_def.to(@device)"
        over["optimizer#params"] = ("$sam2tune.finetune.param_groups(@network.module, @learning_rate, 1.0, "
                                    "@weight_decay)")
    else:
        over["network"] = "$@network_def.to(@device)"
        over["optimizer#params"] = "$sam2tune.finetune.param_groups(@network, @learning_rate, 1.0, @weight_decay)"
    return over


def weights_init(model: str, bundle: str, settings: dict) -> str:
    """-> "pretrained" when a SAM2 run starts from a checkpoint, else "random" (baselines always train from scratch)."""
    if model != "sam2":
        return "random"
    ckpt = settings.get("pretrained_checkpoint", bundle_value(bundle, "pretrained_checkpoint"))
    return "pretrained" if ckpt else "random"


def count_trainable(network: torch.nn.Module) -> tuple[int, int]:
    """-> (trainable, total) parameter elements of the (unwrapped) network."""
    net = unwrap(network)
    params = list(net.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def train_and_evaluate(model: str, bundle: str, output_dir: str, settings: dict | None = None, prompt: str = "box",
                       backbone: str = "resnet18", evaluate: bool = True, name: str | None = None,
                       distributed: bool = False) -> dict:
    """Train `model` with the bundle's train.json, evaluate with its evaluate.json -> run_stats (in run_stats.json).

    `settings`: bundle keys to override (dataset_dir, max_epochs, image_size, ...); output_dir/ckpt_dir are set
    to `output_dir` and `output_dir/models`, resume off (every run starts from scratch). Files: the bundle's
    training_history.json, models/model.pt, eval/summary.json + reports, and run_stats.json.
    `distributed`: train with the bundle's multi_gpu_train.json under torchrun; rank 0 alone then evaluates
    (throughput and memory are rank 0's; `world_size` is recorded).
    """
    from sam2tune.baselines.measure import TrainThroughput

    settings = dict(settings or {})
    if model != "sam2" and "learning_rate" not in settings and model in DEFAULT_LR:
        settings["learning_rate"] = DEFAULT_LR[model]
    out = Path(output_dir).resolve()
    base = {**settings, "output_dir": str(out), "ckpt_dir": str(out / "models"), "resume": False}
    os.makedirs(out, exist_ok=True)
    label = name or (f"sam2_{settings.get('finetune', bundle_value(bundle, 'finetune'))}" if model == "sam2" else model)

    logger.info("=== %s on %s: training", label, bundle)
    train_files = ["train", "multi_gpu_train"] if distributed else ["train"]
    overrides = {**base, **model_overrides(model, bundle, prompt, backbone, distributed=distributed)}
    with open_workflow(bundle, train_files, **overrides) as wf:
        world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        trainer = wf.parser.get_parsed_content("train#trainer")
        meter = TrainThroughput(wf.parser.get_parsed_content("device"))
        meter.attach(trainer)
        trainable, total = count_trainable(wf.parser.get_parsed_content("network"))
        t0 = time.perf_counter()
        wf.run()
    stats = {"name": label, "model": model, "bundle": bundle, "prompt": prompt if model != "sam2" else "bundle",
             "init": weights_init(model, bundle, settings),
             "learning_rate": wf.parser.get_parsed_content("learning_rate"),
             "epochs_trained": trainer.state.epoch, "max_epochs": trainer.state.max_epochs,
             "trainable_params": trainable, "total_params": total, "train_seconds": round(time.perf_counter() - t0, 2),
             "device": str(wf.parser.get_parsed_content("device")), "world_size": world_size, **meter.summary(),
             "settings": settings}
    if model == "resnet":
        stats["backbone"] = backbone
    del wf, trainer
    if int(os.environ.get("RANK", "0")) != 0:  # the bundle's finalize ended the process group; rank 0 reports
        return stats
    # ignite caches the computation model it saw while the group lived; without this re-sync, the evaluator's
    # metrics would all_gather through a destroyed process group ("Default process group has not been initialized")
    idist.sync()
    if evaluate:
        logger.info("=== %s on %s: evaluating", label, bundle)
        overrides = {**base, **model_overrides(model, bundle, prompt, backbone, evaluate=True)}
        ev = run_workflow(bundle, ["train", "evaluate"], **overrides)
        summary_path = Path(ev.parser.get_parsed_content("eval_dir")) / "summary.json"
        summary = json.loads(summary_path.read_text())
        stats.update({"summary": str(summary_path), "mean_dice": summary.get("mean_dice"),
                      "mean_iou": summary.get("mean_iou"), "n_test": summary.get("n")})
    atomic_write_json(stats, str(out / "run_stats.json"))
    return stats
