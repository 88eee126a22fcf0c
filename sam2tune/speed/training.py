"""Benchmark rows: one SAM2 training (or encoder inference) step per fine-tuning strategy, precision and option."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
from monai.losses import DiceCELoss

from sam2tune.finetune import FinetuneConfig, apply_finetune
from sam2tune.networks import SAM2Segmenter
from sam2tune.speed.measure import count_flops, time_steps

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    """One benchmark line: `kind` train | cached | inference | 3d; `strategy` a finetune strategy for train rows."""

    id: str
    name: str
    kind: str
    strategy: str = "full"
    bf16: bool = True
    batch_size: int | None = None  # None = the run's batch size
    compile: bool = False
    checkpointing: bool = False


ROWS: tuple[Row, ...] = (
    # Not Medical-SAM2's code: its loop's settings (fp32, full fine-tune, batch 4) run through our step.
    Row("medsam2_fp32", "medsam2-style plain fp32 full (batch 4)", "train", "full", bf16=False, batch_size=4),
    Row("fp32_full", "plain fp32 full", "train", "full", bf16=False),
    Row("bf16_full", "bf16 full", "train", "full"),
    Row("bf16_full_compile", "bf16 full + compile", "train", "full", compile=True),
    Row("bf16_lora", "bf16 lora", "train", "lora"),
    Row("bf16_lora_ckpt", "bf16 lora + activation checkpointing", "train", "lora", checkpointing=True),
    Row("bf16_adapter_ckpt", "bf16 adapter + activation checkpointing", "train", "adapter", checkpointing=True),
    Row("bf16_decoder_only", "bf16 frozen encoder (decoder_only)", "train", "decoder_only"),
    Row("bf16_cached", "bf16 decoder on cached embeddings", "cached", "decoder_only"),
    Row("bf16_encode", "bf16 encoder inference", "inference"),
    Row("bf16_encode_compile", "bf16 encoder inference + compile", "inference", compile=True),
    Row("3d_propagation", "3D propagation 512x512x100, 13 organs, both directions", "3d"),
)
BASELINE_ROW = "bf16_full"


def select_rows(names: str | None) -> list[Row]:
    """Rows whose id or strategy/kind is in the comma list `names` (None or "all" = every row)."""
    if not names or names.strip() == "all":
        return list(ROWS)
    wanted = {n.strip() for n in names.split(",") if n.strip()}
    known = {r.id for r in ROWS} | {r.strategy for r in ROWS} | {r.kind for r in ROWS}
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(f"Unknown benchmark strategies {unknown}: choose among {', '.join(sorted(known))}.")
    kinds = {"cached", "inference", "3d"}
    picked = []
    for r in ROWS:
        by_strategy = r.kind == "train" and r.strategy in wanted
        if r.id in wanted or by_strategy or (r.kind in kinds and r.kind in wanted):
            picked.append(r)
    return picked


def synthetic_batch(batch: int, image_size: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random images (B, 3, S, S) in [0, 1], disc labels (B, 1, S, S) and their boxes (B, 4) xyxy."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, image_size, image_size, generator=g)
    yy, xx = torch.meshgrid(torch.arange(image_size), torch.arange(image_size), indexing="ij")
    centre = image_size * (0.3 + 0.4 * torch.rand(batch, 2, generator=g))
    radius = image_size * (0.1 + 0.1 * torch.rand(batch, generator=g))
    dist = ((xx[None] - centre[:, 0, None, None]) ** 2 + (yy[None] - centre[:, 1, None, None]) ** 2).sqrt()
    label = (dist <= radius[:, None, None]).float()[:, None]
    boxes = torch.stack([centre[:, 0] - radius, centre[:, 1] - radius, centre[:, 0] + radius, centre[:, 1] + radius], 1)
    return {"image": image.to(device), "label": label.to(device), "boxes": boxes.clamp(0, image_size - 1).to(device)}


def build_network(
    variant: str, image_size: int, row: Row, device: torch.device, channels_last: bool = False
) -> SAM2Segmenter:
    """A randomly initialised SAM2Segmenter prepared for the row's strategy (weights don't change the speed)."""
    # The random-init warning and the parameter table are expected here: once per row they are noise.
    quiet = [logging.getLogger(n) for n in ("sam2tune.networks.build", "sam2tune.finetune.strategies")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.ERROR)
    try:
        net = SAM2Segmenter(variant, image_size, pretrained_checkpoint=None)
        strategy = row.strategy if row.kind == "train" else "decoder_only"
        apply_finetune(net, FinetuneConfig(strategy=strategy, activation_checkpointing=row.checkpointing))
    finally:
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)
    net = net.to(device)
    return net.to(memory_format=torch.channels_last) if channels_last else net


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def effective_bf16(row: Row, device: torch.device, cpu_bf16: bool = False) -> bool:
    """bf16 rows run bf16 on CUDA; on CPU only when asked (bf16 matmuls are emulated, hence slow, on most CPUs)."""
    return row.bf16 and (device.type == "cuda" or cpu_bf16)


def make_step(row: Row, net: SAM2Segmenter, batch: dict, device: torch.device, compile_model: bool = False,
              bf16: bool | None = None) -> Callable[[], object]:
    """A closure running one step of `row` on `batch` (train: forward + loss + backward + AdamW; inference: encode)."""
    bf16 = row.bf16 if bf16 is None else bf16
    if row.kind == "inference":
        net.eval()
        encode = torch.compile(net.encode) if compile_model else net.encode

        def infer_step():
            with torch.inference_mode(), _autocast(device, bf16):
                return encode(batch["image"])

        return infer_step

    net.train()
    features = None
    if row.kind == "cached":
        # Computed once, as EmbeddingCache does: later steps only run prompt encoder + mask decoder.
        net.eval()
        with torch.no_grad(), _autocast(device, bf16):
            features = net.encode(batch["image"], project_high_res=False)
        net.train()
    model = torch.compile(net) if compile_model else net
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    loss_fn = DiceCELoss(sigmoid=True)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, bf16):
            logits = model(batch["image"], boxes=batch["boxes"], features=features)
        loss = loss_fn(logits.float(), batch["label"])
        loss.backward()
        optimizer.step()
        return loss

    return train_step


def run_row(
    row: Row,
    variant: str,
    image_size: int,
    batch_size: int,
    device: torch.device,
    steps: int,
    warmup: int,
    channels_last: bool = False,
    peak_tflops: float | None = None,
    cpu_bf16: bool = False,
) -> dict:
    """Measure one row; returns images/s, step ms, peak memory, counted FLOPs per image and fraction of peak."""
    batch_size = row.batch_size or batch_size
    net = build_network(variant, image_size, row, device, channels_last)
    batch = synthetic_batch(batch_size, image_size, device)
    if channels_last:
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
    # FLOPs are counted on an eager step (FlopCounterMode does not see inside compiled graphs).
    bf16 = effective_bf16(row, device, cpu_bf16)
    flops = count_flops(make_step(row, net, batch, device, bf16=bf16)) / batch_size
    step = make_step(row, net, batch, device, compile_model=row.compile, bf16=bf16)
    out = time_steps(step, device, batch_size, steps=steps, warmup=warmup + (2 if row.compile else 0))
    out |= {"batch_size": batch_size, "gflop_per_image": flops / 1e9, "precision": "bf16" if bf16 else "fp32"}
    achieved = out["images_per_s"] * flops / 1e12
    out["achieved_tflops"] = achieved
    out["fraction_of_peak"] = achieved / peak_tflops if peak_tflops and bf16 else None
    if not math.isfinite(out["images_per_s"]):
        raise RuntimeError(f"row {row.id}: non-finite throughput")
    return out


def row_info(row: Row) -> dict:
    """The row's settings as a JSON-ready dict."""
    return asdict(row)
